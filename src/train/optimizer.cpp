#include "cord/train/optimizer.hpp"

#include <algorithm>
#include <cmath>

#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"

namespace cord::train {

AdamW::AdamW(const std::vector<model::ParamShard>& parameters, AdamWOptions options,
             const comm::ProcessGroup* zero1_group)
    : options_(options) {
  if (zero1_group != nullptr && zero1_group->size() > 1) zero1_group_ = *zero1_group;
  const int ranks = zero1_group_ ? zero1_group_->size() : 1;
  const int me = zero1_group_ ? zero1_group_->rank() : 0;
  std::vector<int64_t> owned(static_cast<size_t>(ranks), 0);
  for (const model::ParamShard& shard : parameters) {
    if (!shard.param.requires_grad()) continue;
    ParamState s{shard.name, shard.param, at::Tensor(), at::Tensor(), shard.param.dim() >= 2, 0, 1.0};
    // Greedy balance: the least-loaded rank owns the next parameter (ties: lowest rank),
    // the same decision on every rank because the parameter order is the same.
    s.owner = static_cast<int>(std::min_element(owned.begin(), owned.end()) - owned.begin());
    owned[static_cast<size_t>(s.owner)] += shard.param.numel();
    if (s.owner == me) {
      s.exp_avg = torch::zeros_like(shard.param);
      s.exp_avg_sq = torch::zeros_like(shard.param);
    }
    state_.push_back(std::move(s));
  }
}

int64_t AdamW::local_state_numel() const {
  int64_t total = 0;
  for (const ParamState& s : state_) total += s.exp_avg.defined() ? 2 * s.exp_avg.numel() : 0;
  return total;
}

int64_t AdamW::scale_lr(const std::string& name_prefix, double scale) {
  int64_t matched = 0;
  for (ParamState& s : state_) {
    if (s.name.compare(0, name_prefix.size(), name_prefix) != 0) continue;
    s.lr_scale = scale;
    ++matched;
  }
  return matched;
}

namespace {

// The parameters that one fused update covers: same learning-rate scale and decay, so the
// same scalar arguments. Lists of tensors, each list in state order.
struct FusedGroup {
  double lr_scale;
  bool decay;
  std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
};

}  // namespace

void AdamW::step(double step_lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  // at::_fused_adamw_ makes one pass over p, g, m and v per parameter (one kernel launch per
  // group of tensors on CUDA) instead of ten elementwise passes; it is the update in the
  // header, with sqrt(v / (1 - b2^t)) computed as sqrt(v) / sqrt(1 - b2^t).
  std::vector<FusedGroup> groups;
  for (ParamState& s : state_) {
    const at::Tensor grad = s.param.grad();
    if (!grad.defined() || !s.exp_avg.defined()) continue;  // not ours under ZeRO-1
    auto group = std::find_if(groups.begin(), groups.end(), [&](const FusedGroup& g) {
      return g.lr_scale == s.lr_scale && g.decay == s.decay && g.params.front().device() == s.param.device();
    });
    if (group == groups.end()) group = groups.insert(groups.end(), FusedGroup{s.lr_scale, s.decay, {}, {}, {}, {}});
    group->params.push_back(s.param);
    group->grads.push_back(grad);
    group->exp_avgs.push_back(s.exp_avg);
    group->exp_avg_sqs.push_back(s.exp_avg_sq);
  }
  for (const FusedGroup& group : groups) {
    // t for the bias correction, read by the kernel from a float32 tensor on the parameters'
    // device (exact for t < 2^24); every tensor of the group shares it.
    const at::Tensor steps_taken = torch::full(
        {}, static_cast<double>(step_), torch::TensorOptions().dtype(torch::kFloat).device(group.params.front().device()));
    const std::vector<at::Tensor> state_steps(group.params.size(), steps_taken);
    at::_fused_adamw_(group.params, group.grads, group.exp_avgs, group.exp_avg_sqs, /*max_exp_avg_sqs=*/{},
                      state_steps, step_lr * group.lr_scale, options_.beta1, options_.beta2,
                      group.decay ? options_.weight_decay : 0.0, options_.eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  }
  if (zero1_group_) {
    for (ParamState& s : state_) {
      if (s.param.grad().defined()) comm::broadcast(*zero1_group_, s.param.detach(), s.owner);
    }
  }
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return peak_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (step >= total_steps) return min_lr;
  const double progress =
      static_cast<double>(step - warmup_steps) / static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

double global_grad_norm(const std::vector<model::ParamShard>& parameters, const comm::ProcessGroup& tp_group) {
  torch::NoGradGuard no_grad;
  // [split, replicated] sums of squares, in float64.
  at::Tensor sums = torch::zeros({2}, torch::kDouble);
  for (const model::ParamShard& shard : parameters) {
    const at::Tensor grad = shard.param.grad();
    if (!grad.defined() || !shard.primary) continue;  // a replica's gradient counts once
    sums[shard.split_dim >= 0 ? 0 : 1] += grad.to(torch::kDouble).pow(2).sum().cpu();
  }
  at::Tensor split = sums.narrow(0, 0, 1).contiguous();
  comm::all_reduce(tp_group, split, comm::ReduceOp::kSum);
  return std::sqrt(split.item<double>() + sums[1].item<double>());
}

double clip_grad_norm(const std::vector<model::ParamShard>& parameters, double norm, double max_norm) {
  if (!(norm > max_norm) || !std::isfinite(norm)) return 1.0;
  const double factor = max_norm / norm;
  torch::NoGradGuard no_grad;
  for (const model::ParamShard& shard : parameters) {
    if (shard.param.grad().defined()) shard.param.grad().mul_(factor);
  }
  return factor;
}

bool finite_on_all_ranks(double value, const comm::ProcessGroup& group) {
  const at::Tensor bad = torch::tensor({std::isfinite(value) ? 0 : 1}, torch::kInt);
  comm::all_reduce(group, bad, comm::ReduceOp::kMax);
  return bad.item<int>() == 0;
}

}  // namespace cord::train
