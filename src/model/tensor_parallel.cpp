#include "cord/model/tensor_parallel.hpp"

#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"

namespace cord::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The group travels through the autograd context as a reference-counted copy (a capsule
// IValue), so that the graph keeps its communicators alive until backward has run,
// whatever happens to the module or caller that passed the group in.
struct SavedGroup : torch::CustomClassHolder {
  explicit SavedGroup(comm::ProcessGroup g) : group(std::move(g)) {}
  comm::ProcessGroup group;
};
void save_group(AutogradContext* ctx, const comm::ProcessGroup& group) {
  ctx->saved_data["group"] = c10::IValue::make_capsule(c10::make_intrusive<SavedGroup>(group));
}
comm::ProcessGroup saved_group(AutogradContext* ctx) {
  const c10::intrusive_ptr<torch::CustomClassHolder> capsule = ctx->saved_data["group"].toCapsule();
  return static_cast<const SavedGroup*>(capsule.get())->group;
}

at::Tensor all_reduce_sum(const at::Tensor& x, const comm::ProcessGroup& group) {
  at::Tensor out = x.contiguous().clone();
  comm::all_reduce(group, out, comm::ReduceOp::kSum);
  return out;
}

// [..., n] on each rank -> [..., P * n], rank slices in order.
at::Tensor all_gather_last_dim(const at::Tensor& x, const comm::ProcessGroup& group) {
  const at::Tensor in = x.contiguous();
  std::vector<int64_t> stacked{group.size()};
  stacked.insert(stacked.end(), in.sizes().begin(), in.sizes().end());
  const at::Tensor out = at::empty(stacked, in.options());
  comm::all_gather(group, in, out);
  std::vector<int64_t> joined(in.sizes().begin(), in.sizes().end());
  joined.back() *= group.size();
  return out.movedim(0, -2).reshape(joined);  // [P, ..., n] -> [..., P, n] -> [..., P*n]
}

at::Tensor own_slice_last_dim(const at::Tensor& x, const comm::ProcessGroup& group) {
  const int64_t full = x.size(-1);
  CORD_CHECK(full % group.size() == 0, "last dimension " + std::to_string(full) + " not divisible by tp size " +
                                           std::to_string(group.size()));
  const int64_t n = full / group.size();
  return x.narrow(-1, group.rank() * n, n).contiguous();
}

struct CopyTo : torch::autograd::Function<CopyTo> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const comm::ProcessGroup* group) {
    save_group(ctx, *group);
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_reduce_sum(grads[0], saved_group(ctx)), at::Tensor()};
  }
};

struct ReduceFrom : torch::autograd::Function<ReduceFrom> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x, const comm::ProcessGroup* group) {
    return all_reduce_sum(x, *group);
  }
  static variable_list backward(AutogradContext*, variable_list grads) { return {grads[0], at::Tensor()}; }
};

// Forward and backward both all-reduce: for a sum whose consumers are shard-local, so
// that each rank's gradient holds only its shard's part (the softmax normaliser).
struct SumAcross : torch::autograd::Function<SumAcross> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const comm::ProcessGroup* group) {
    save_group(ctx, *group);
    return all_reduce_sum(x, *group);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_reduce_sum(grads[0], saved_group(ctx)), at::Tensor()};
  }
};

struct GatherFrom : torch::autograd::Function<GatherFrom> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const comm::ProcessGroup* group) {
    save_group(ctx, *group);
    return all_gather_last_dim(x, *group);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {own_slice_last_dim(grads[0], saved_group(ctx)), at::Tensor()};
  }
};

struct ScatterTo : torch::autograd::Function<ScatterTo> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const comm::ProcessGroup* group) {
    save_group(ctx, *group);
    return own_slice_last_dim(x, *group);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_gather_last_dim(grads[0], saved_group(ctx)), at::Tensor()};
  }
};

}  // namespace

int64_t rows_per_part(int64_t size, int64_t parts, bool pad, const std::string& what) {
  if (pad) return (size + parts - 1) / parts;
  if (size % parts != 0) {
    throw UsageError(what + " " + std::to_string(size) + " are not divisible into " + std::to_string(parts) +
                     " tensor-parallel parts");
  }
  return size / parts;
}

namespace {

int64_t split(int64_t size, const comm::ProcessGroup& group, const char* what) {
  if (size % group.size() != 0) {
    throw UsageError(std::string(what) + " " + std::to_string(size) + " is not divisible by the tensor-parallel size " +
                     std::to_string(group.size()));
  }
  return size / group.size();
}

// For a tensor held by groups of `replicas` consecutive tp ranks (each group one part):
// forward identity; backward sums the gradient over the ranks of this rank's group, since
// each of them computed only its own share of it (a replicated key/value head serves the
// query heads of several ranks). Done with one all-reduce over the whole tp group of a
// [parts, ...] buffer holding this rank's gradient in its part's row.
struct SumOverReplicas : torch::autograd::Function<SumOverReplicas> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const comm::ProcessGroup* group,
                            int64_t replicas) {
    save_group(ctx, *group);
    ctx->saved_data["replicas"] = replicas;
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const comm::ProcessGroup group = saved_group(ctx);
    const int64_t replicas = ctx->saved_data["replicas"].toInt();
    const int64_t part = group.rank() / replicas;
    std::vector<int64_t> shape{group.size() / replicas};
    shape.insert(shape.end(), grads[0].sizes().begin(), grads[0].sizes().end());
    at::Tensor parts = at::zeros(shape, grads[0].options());
    parts[part].copy_(grads[0]);
    comm::all_reduce(group, parts, comm::ReduceOp::kSum);
    return {parts[part].clone(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

namespace tp {
at::Tensor copy_to(const at::Tensor& x, const comm::ProcessGroup& group) {
  return group.size() == 1 ? x : CopyTo::apply(x, &group);
}
at::Tensor reduce_from(const at::Tensor& x, const comm::ProcessGroup& group) {
  return group.size() == 1 ? x : ReduceFrom::apply(x, &group);
}
at::Tensor gather_from(const at::Tensor& x, const comm::ProcessGroup& group) {
  return group.size() == 1 ? x : GatherFrom::apply(x, &group);
}
at::Tensor scatter_to(const at::Tensor& x, const comm::ProcessGroup& group) {
  return group.size() == 1 ? x : ScatterTo::apply(x, &group);
}
}  // namespace tp

ColumnParallelLinearImpl::ColumnParallelLinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                                                   bool gather_output, comm::ProcessGroup group, int64_t replicas,
                                                   bool pad_output)
    : in_features_(in_features),
      out_features_(out_features),
      gather_output_(gather_output),
      pad_output_(pad_output),
      replicas_(replicas),
      group_(std::move(group)) {
  CORD_CHECK(replicas_ >= 1 && group_.size() % replicas_ == 0 && !(gather_output && replicas_ > 1),
             "column-parallel replicas " + std::to_string(replicas_) + " do not fit tp " + std::to_string(group_.size()));
  CORD_CHECK(!(pad_output && gather_output), "a padded column-parallel output cannot be gathered");
  const int64_t parts = group_.size() / replicas_;
  const int64_t local_out = rows_per_part(out_features, parts, pad_output, "column-parallel output features");
  weight = register_parameter("weight", torch::empty({local_out, in_features}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({local_out}));
}

at::Tensor ColumnParallelLinearImpl::forward(const at::Tensor& x) { return forward_in_region(tp::copy_to(x, group_)); }

at::Tensor ColumnParallelLinearImpl::forward_in_region(const at::Tensor& x_in_region) {
  if (replicas_ > 1) {
    const at::Tensor w = SumOverReplicas::apply(weight, &group_, replicas_);
    const at::Tensor b = bias.defined() ? SumOverReplicas::apply(bias, &group_, replicas_) : at::Tensor();
    return torch::nn::functional::linear(x_in_region, w, b);
  }
  const at::Tensor y = torch::nn::functional::linear(x_in_region, weight, bias);
  return gather_output_ ? tp::gather_from(y, group_) : y;
}

std::map<std::string, ShardSpec> ColumnParallelLinearImpl::shard_specs() const {
  std::map<std::string, ShardSpec> specs{{"weight", {0, {out_features_, in_features_}, replicas_}}};
  if (bias.defined()) specs["bias"] = {0, {out_features_}, replicas_};
  return specs;
}

RowParallelLinearImpl::RowParallelLinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                                             comm::ProcessGroup group)
    : in_features_(in_features), out_features_(out_features), group_(std::move(group)) {
  const int64_t local_in = split(in_features, group_, "row-parallel input features");
  weight = register_parameter("weight", torch::empty({out_features, local_in}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out_features}));
}

at::Tensor RowParallelLinearImpl::forward(const at::Tensor& x_parallel) {
  const at::Tensor y = tp::reduce_from(torch::nn::functional::linear(x_parallel, weight), group_);
  return bias.defined() ? y + bias : y;  // the bias is added once, after the reduction
}

std::map<std::string, ShardSpec> RowParallelLinearImpl::shard_specs() const {
  return {{"weight", {1, {out_features_, in_features_}}}};
}

VocabParallelEmbeddingImpl::VocabParallelEmbeddingImpl(int64_t vocab_size, int64_t dim, comm::ProcessGroup group)
    : vocab_size_(vocab_size), dim_(dim), group_(std::move(group)) {
  const int64_t local_vocab = rows_per_part(vocab_size, group_.size(), /*pad=*/true, "vocabulary rows");
  vocab_start_ = group_.rank() * local_vocab;
  weight = register_parameter("weight", torch::empty({local_vocab, dim}));
}

at::Tensor VocabParallelEmbeddingImpl::forward(const at::Tensor& ids) {
  if (group_.size() == 1) return torch::embedding(weight, ids);
  const int64_t local_vocab = weight.size(0);
  const at::Tensor mine = (ids >= vocab_start_) & (ids < vocab_start_ + local_vocab);
  const at::Tensor local_ids = (ids - vocab_start_).masked_fill(~mine, 0);
  const at::Tensor rows = torch::embedding(weight, local_ids) * mine.unsqueeze(-1).to(weight.scalar_type());
  return tp::reduce_from(rows, group_);
}

at::Tensor VocabParallelEmbeddingImpl::project(const at::Tensor& hidden) {
  return torch::matmul(tp::copy_to(hidden, group_), weight.t());
}

std::map<std::string, ShardSpec> VocabParallelEmbeddingImpl::shard_specs() const {
  return {{"weight", {0, {vocab_size_, dim_}}}};
}

at::Tensor vocab_parallel_log_softmax(const at::Tensor& logits_shard, const comm::ProcessGroup& group) {
  if (group.size() == 1) return torch::log_softmax(logits_shard, -1);
  // The max only stabilises exp(); log-softmax does not depend on it, so no gradient.
  const at::Tensor max = logits_shard.detach().amax(-1, /*keepdim=*/true).contiguous();
  comm::all_reduce(group, max, comm::ReduceOp::kMax);
  const at::Tensor shifted = logits_shard - max;
  const at::Tensor sum_exp = SumAcross::apply(shifted.exp().sum(-1, /*keepdim=*/true), &group);
  return shifted - sum_exp.log();
}

at::Tensor vocab_parallel_cross_entropy(const at::Tensor& logits_shard, const at::Tensor& targets,
                                        const comm::ProcessGroup& group) {
  const at::Tensor log_probs = vocab_parallel_log_softmax(logits_shard, group);
  const int64_t local_vocab = logits_shard.size(-1);
  const int64_t start = group.rank() * local_vocab;
  const at::Tensor mine = (targets >= start) & (targets < start + local_vocab);
  const at::Tensor index = (targets - start).clamp(0, local_vocab - 1).unsqueeze(-1);
  const at::Tensor picked = log_probs.gather(-1, index).squeeze(-1) * mine.to(log_probs.scalar_type());
  return -tp::reduce_from(picked, group);
}

at::Tensor vocab_parallel_sum(const at::Tensor& values_shard, const comm::ProcessGroup& group) {
  return tp::reduce_from(values_shard.sum(-1), group);
}

at::Tensor mask_vocab_padding(const at::Tensor& logits_shard, int64_t vocab_size, const comm::ProcessGroup& group) {
  const int64_t local = logits_shard.size(-1);
  const int64_t start = group.rank() * local;
  if (start + local <= vocab_size) return logits_shard;
  const at::Tensor padding = torch::arange(start, start + local, logits_shard.options().dtype(torch::kLong)) >= vocab_size;
  return logits_shard.masked_fill(padding, kPaddingLogit);
}

at::Tensor gather_vocab(const at::Tensor& logits_shard, const comm::ProcessGroup& group, int64_t vocab_size) {
  at::Tensor full = logits_shard;
  if (group.size() > 1) {
    torch::NoGradGuard no_grad;
    full = all_gather_last_dim(logits_shard, group);
  }
  if (vocab_size >= 0 && full.size(-1) > vocab_size) full = full.narrow(-1, 0, vocab_size);
  return full;
}

}  // namespace cord::model
