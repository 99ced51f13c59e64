#include "cord/distill/losses.hpp"

#include <cmath>

#include "cord/core/error.hpp"
#include "cord/model/tensor_parallel.hpp"

namespace cord::distill {
namespace {

// At least float32: bf16/fp16 logits are upcast, float64 (the finite-difference tests) kept.
at::Tensor float32(const at::Tensor& t) { return at::isReducedFloatingType(t.scalar_type()) ? t.to(torch::kFloat) : t; }

// sum_v p(v) (log p(v) - log r(v)) with p = softmax(p_logits), r = softmax(r_logits).
at::Tensor kl(const at::Tensor& p_logits, const at::Tensor& r_logits, const comm::ProcessGroup& tp) {
  CORD_CHECK(p_logits.sizes() == r_logits.sizes(), "student and teacher logits differ in shape");
  const at::Tensor log_p = model::vocab_parallel_log_softmax(float32(p_logits), tp);
  const at::Tensor log_r = model::vocab_parallel_log_softmax(float32(r_logits), tp);
  return model::vocab_parallel_sum(log_p.exp() * (log_p - log_r), tp);
}

}  // namespace

at::Tensor reverse_kl(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                      const comm::ProcessGroup& tp_group) {
  return kl(student_logits, teacher_logits.detach(), tp_group);
}

at::Tensor forward_kl(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                      const comm::ProcessGroup& tp_group) {
  return kl(teacher_logits.detach(), student_logits, tp_group);
}

at::Tensor cord_weights(const at::Tensor& divergence, const at::Tensor& mask, double alpha, double beta,
                        int64_t top_k, double top_k_fraction) {
  CORD_CHECK(divergence.dim() == 2 && divergence.sizes() == mask.sizes(), "divergence and mask must be [B, T]");
  CORD_CHECK(top_k >= 0, "top_k must be >= 0");
  CORD_CHECK(top_k_fraction >= 0 && top_k_fraction <= 1, "top_k_fraction must be in [0, 1]");
  torch::NoGradGuard no_grad;
  const at::Tensor d = divergence.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const at::Tensor m = mask.to(torch::kCPU, torch::kBool).contiguous();
  at::Tensor weights = torch::zeros(d.sizes(), torch::kFloat);
  auto d_a = d.accessor<double, 2>();
  auto m_a = m.accessor<bool, 2>();
  auto w_a = weights.accessor<float, 2>();
  for (int64_t b = 0; b < d.size(0); ++b) {
    int64_t length = 0;
    while (length < d.size(1) && m_a[b][length]) ++length;
    for (int64_t t = length; t < d.size(1); ++t) CORD_CHECK(!m_a[b][t], "mask rows must be contiguous prefixes");
    if (length == 0) continue;
    // Positions by decreasing divergence, earlier first among equals.
    std::vector<int64_t> order(static_cast<size_t>(length));
    for (int64_t t = 0; t < length; ++t) order[static_cast<size_t>(t)] = t;
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return d_a[b][x] > d_a[b][y]; });
    std::vector<double> kl_weight(static_cast<size_t>(length), 1.0);
    const int64_t k =
        top_k_fraction > 0 ? static_cast<int64_t>(std::ceil(top_k_fraction * static_cast<double>(length))) : top_k;
    for (int64_t i = 0; i < std::min(k, length); ++i) kl_weight[static_cast<size_t>(order[static_cast<size_t>(i)])] = alpha;
    for (int64_t t = 0; t < length; ++t) {
      const double position = length == 1 ? beta : beta - (beta - 1.0) * static_cast<double>(t) / static_cast<double>(length - 1);
      w_a[b][t] = static_cast<float>(kl_weight[static_cast<size_t>(t)] * position);
    }
  }
  return weights.to(divergence.device());
}

at::Tensor aggregate(const at::Tensor& per_position, const at::Tensor& mask, Aggregation aggregation) {
  CORD_CHECK(per_position.sizes() == mask.sizes(), "loss and mask differ in shape");
  const at::Tensor valid = mask.to(per_position.scalar_type());
  const at::Tensor masked = per_position * valid;
  const int64_t rollouts = per_position.size(0);
  switch (aggregation) {
    case Aggregation::kSum:
      return masked.sum() / static_cast<double>(rollouts);
    case Aggregation::kTokenMean:
      return masked.sum() / valid.sum().clamp_min(1.0);
    case Aggregation::kSequenceMean:
      return (masked.sum(1) / valid.sum(1).clamp_min(1.0)).mean();
  }
  throw Error("unknown aggregation");
}

at::Tensor aggregation_weights(const at::Tensor& mask, Aggregation aggregation) {
  CORD_CHECK(mask.dim() == 2, "mask must be [B, T]");
  const at::Tensor valid = mask.to(torch::kFloat);
  switch (aggregation) {
    case Aggregation::kSum:
      return valid / static_cast<double>(mask.size(0));
    case Aggregation::kTokenMean:
      return valid / valid.sum().clamp_min(1.0);
    case Aggregation::kSequenceMean:
      return valid / (valid.sum(1, /*keepdim=*/true).clamp_min(1.0) * static_cast<double>(mask.size(0)));
  }
  throw Error("unknown aggregation");
}

TokenTerms token_terms(TokenLoss kind, const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                       const at::Tensor& targets, const at::Tensor& mask, double alpha, double beta, int64_t top_k,
                       const comm::ProcessGroup& tp_group, double top_k_fraction) {
  TokenTerms out;
  switch (kind) {
    case TokenLoss::kCrossEntropy:
      out.per_position = model::vocab_parallel_cross_entropy(float32(student_logits), targets, tp_group);
      return out;
    case TokenLoss::kReverseKl:
      out.divergence = reverse_kl(student_logits, teacher_logits, tp_group);
      out.per_position = cord_weights(out.divergence, mask, alpha, beta, top_k, top_k_fraction).to(out.divergence.scalar_type()) *
                         out.divergence;
      return out;
    case TokenLoss::kForwardKl:
      out.divergence = forward_kl(student_logits, teacher_logits, tp_group);
      out.per_position = out.divergence;
      return out;
    case TokenLoss::kNone:
      break;
  }
  throw Error("token_terms: the method has no token-level loss");
}

at::Tensor grpo_advantages(const at::Tensor& rewards, bool normalize_by_std) {
  CORD_CHECK(rewards.dim() == 2, "rewards must be [prompts, rollouts]");
  const at::Tensor r = rewards.to(torch::kFloat);
  at::Tensor advantages = r - r.mean(1, /*keepdim=*/true);
  if (normalize_by_std) {
    const at::Tensor std = r.std(1, /*unbiased=*/false, /*keepdim=*/true);
    advantages = advantages / (std + 1e-6);
  }
  return advantages;
}

at::Tensor grpo_loss(const at::Tensor& sequence_log_probs, const at::Tensor& advantages) {
  CORD_CHECK(sequence_log_probs.sizes() == advantages.sizes(), "log-probabilities and advantages differ in shape");
  return -(advantages.detach().to(sequence_log_probs.scalar_type()) * sequence_log_probs).mean(1).mean();
}

}  // namespace cord::distill
