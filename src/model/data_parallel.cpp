#include "cord/model/data_parallel.hpp"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "cord/core/error.hpp"

namespace cord::model {

class GradientSynchronizer::AccumulateHook : public torch::autograd::PostAccumulateGradHook {
 public:
  AccumulateHook(GradientSynchronizer* owner, size_t bucket) : owner_(owner), bucket_(bucket) {}
  void operator()(const torch::autograd::Variable& /*param*/) override { owner_->on_accumulated(bucket_); }

 private:
  GradientSynchronizer* owner_;
  size_t bucket_;
};

GradientSynchronizer::GradientSynchronizer(const std::vector<at::Tensor>& parameters, comm::ProcessGroup dp_group,
                                           double bucket_mb)
    : dp_group_(std::move(dp_group)) {
  const auto bucket_bytes = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  // Reverse order: the last layers' gradients arrive first in backward.
  std::vector<std::vector<at::Tensor>> groups;
  int64_t bytes = bucket_bytes;  // forces a new bucket for the first parameter
  at::ScalarType dtype = at::kFloat;
  for (auto it = parameters.rbegin(); it != parameters.rend(); ++it) {
    const at::Tensor& p = *it;
    if (!p.requires_grad()) continue;
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    if (groups.empty() || bytes + size > bucket_bytes || p.scalar_type() != dtype || p.device() != groups.back()[0].device()) {
      groups.emplace_back();
      bytes = 0;
      dtype = p.scalar_type();
    }
    groups.back().push_back(p);
    bytes += size;
  }
  buckets_.resize(groups.size());
  for (size_t b = 0; b < groups.size(); ++b) {
    Bucket& bucket = buckets_[b];
    int64_t total = 0;
    for (const at::Tensor& p : groups[b]) total += p.numel();
    bucket.buffer = torch::zeros({total}, groups[b][0].options().requires_grad(false));
    int64_t offset = 0;
    for (const at::Tensor& p : groups[b]) {
      at::Tensor param = p;  // shares the TensorImpl: .grad is set on the parameter itself
      param.mutable_grad() = bucket.buffer.narrow(0, offset, p.numel()).view_as(p);
      offset += p.numel();
      torch::autograd::impl::set_post_acc_grad_hooks(param, std::make_unique<AccumulateHook>(this, b));
      bucket.params.push_back(param);
    }
    bucket.pending = static_cast<int64_t>(bucket.params.size());
  }
}

GradientSynchronizer::~GradientSynchronizer() {
  for (Bucket& bucket : buckets_) {
    for (at::Tensor& p : bucket.params) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
  }
}

void GradientSynchronizer::launch(Bucket& bucket) {
  bucket.launched = true;
  if (dp_group_.size() > 1) bucket.work = comm::all_reduce_async(dp_group_, bucket.buffer, comm::ReduceOp::kAvg);
}

void GradientSynchronizer::on_accumulated(size_t index) {
  if (!sync_enabled_) return;
  Bucket& bucket = buckets_[index];
  if (--bucket.pending == 0 && !bucket.launched) {
    launch(bucket);
    ++launched_in_hooks_;
  }
  // Let MPI progress the buckets already in flight while backward computes.
  for (Bucket& other : buckets_) {
    if (other.launched) other.work.test();
  }
}

void GradientSynchronizer::finish() {
  for (Bucket& bucket : buckets_) {
    if (!bucket.launched) launch(bucket);
  }
  for (Bucket& bucket : buckets_) {
    bucket.work.wait();
    bucket.work = comm::Work();
    bucket.launched = false;
    bucket.pending = static_cast<int64_t>(bucket.params.size());
  }
}

void GradientSynchronizer::zero_grad() {
  for (Bucket& bucket : buckets_) {
    bucket.buffer.zero_();
    for (const at::Tensor& p : bucket.params) {
      CORD_CHECK(p.grad().defined() && p.grad().storage().is_alias_of(bucket.buffer.storage()),
                 "a parameter's .grad no longer views its gradient bucket (was it set to None?)");
    }
  }
}

}  // namespace cord::model
