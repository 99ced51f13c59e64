#pragma once
// The token- and sequence-level losses of CORD (docs/method.md, "Token loss"), on logits split over
// the vocabulary across the tensor-parallel group ([..., V/P] per rank). Every softmax and
// KL is computed in float32 at least (bf16 logits are upcast).
//
//   reverse KL   D_t = sum_v s_t(v) (log s_t(v) - log q_t(v))     student s, teacher q
//   forward KL   F_t = sum_v q_t(v) (log q_t(v) - log s_t(v))
//   weights      w_t = w^KL_t * w^pos_t, for t = 1..T over one rollout's valid positions:
//                w^KL_t = alpha for the top_k positions with the largest D_t (ties broken
//                by the earlier position; or ceil(top_k_fraction * T) of them), else 1; w^pos_t = beta - (beta - 1)(t - 1)/(T - 1)
//                (T = 1: beta). Constants: no gradient flows through them.
//   GRPO         A_i = r_i - mean_j r_j over a prompt's N rollouts (optionally / std)
//                L_seq = -(1/N) sum_i A_i log p(y_i | a)
#include <torch/torch.h>

#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"

namespace cord::distill {

// [B, T, V/P] student and teacher logit shards -> [B, T] per-position divergence. The
// teacher side is detached (it never receives a gradient).
at::Tensor reverse_kl(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                      const comm::ProcessGroup& tp_group);
at::Tensor forward_kl(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                      const comm::ProcessGroup& tp_group);

// divergence [B, T] (only read), mask [B, T] bool with each row's valid positions a
// contiguous prefix -> weights [B, T] (0 on invalid positions), float32, no gradient.
// top_k_fraction > 0 replaces top_k by ceil(top_k_fraction * T) for a rollout of T positions.
at::Tensor cord_weights(const at::Tensor& divergence, const at::Tensor& mask, double alpha, double beta,
                        int64_t top_k, double top_k_fraction = 0);

// How a per-position loss [B, T] (masked) becomes a scalar (cord.aggregation):
//   kSum           the paper: sum over positions, mean over rollouts
//   kTokenMean     sum over every valid position of the batch / their count
//   kSequenceMean  mean over each rollout's positions, then mean over rollouts
using Aggregation = cord::Aggregation;
at::Tensor aggregate(const at::Tensor& per_position, const at::Tensor& mask, Aggregation aggregation);
// The same reduction as per-position coefficients c [B, T] (float32, 0 where masked), so that
// aggregate(x, mask, a) == sum(c * x) for every x: 1/B (sum), 1/valid positions (token_mean),
// 1/(B * the row's length) (sequence_mean). For losses that weight positions before summing
// (chunked_loss.hpp).
at::Tensor aggregation_weights(const at::Tensor& mask, Aggregation aggregation);

// rewards [P, N] (N rollouts of each of P prompts) -> advantages [P, N].
at::Tensor grpo_advantages(const at::Tensor& rewards, bool normalize_by_std);

// The token-level loss of a distill method.
enum class TokenLoss {
  kNone,
  kReverseKl,     // on-policy: KL(student || teacher) on the student's audio rollout, weighted w_t
  kForwardKl,     // KL(teacher || student) on the teacher's text rollout
  kCrossEntropy,  // SFT: -log p(y_t | audio, y_<t) on the teacher's text rollout
};

// Student and teacher response logits [R, T, V/P] (teacher unused for kCrossEntropy),
// targets [R, T] (-1 past each response), mask [R, T] -> the per-position loss [R, T]
// (for reverse KL already weighted by cord_weights(alpha, beta, top_k)) and the unweighted
// divergence [R, T] (undefined for cross-entropy). Aggregate with aggregate().
struct TokenTerms {
  at::Tensor per_position;
  at::Tensor divergence;
};
TokenTerms token_terms(TokenLoss kind, const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                       const at::Tensor& targets, const at::Tensor& mask, double alpha, double beta, int64_t top_k,
                       const comm::ProcessGroup& tp_group, double top_k_fraction = 0);

// sequence_log_probs [P, N] (differentiable), advantages [P, N] (constants) ->
// -(1/N) sum_i A_i log p(y_i), averaged over prompts.
at::Tensor grpo_loss(const at::Tensor& sequence_log_probs, const at::Tensor& advantages);

}  // namespace cord::distill
