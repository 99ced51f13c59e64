#pragma once
// The token-level losses of losses.hpp computed from final hidden states instead of logits,
// a few rollouts at a time, so that no [R, T, V] tensor ever exists. At Qwen2's vocabulary
// (V = 151,936) the float32 logits of 64 rollouts x 200 positions are 7.8 GB per side,
// and the logits path keeps several such tensors alive for backward (the student's logits,
// log-softmax, probabilities and their products, and the teacher's).
//
// For rows [b, b + c) at a time (c = chunk_rows), this tp rank computes its vocabulary
// slice of the student's logits z_s = h_s W_s^T and, just in time, the teacher's
// z_t = h_t W_t^T (never stored for more than the chunk), the per-position term D_t of
// `kind` (reverse KL, forward KL or cross-entropy, as losses.hpp defines them; padded
// vocabulary columns masked as the LM head masks them), asks `weights` for the chunk's
// per-position weights g_t (constants: for CORD its w_t times the aggregation's scale),
// adds sum_t g_t D_t to the loss, and forms the chunk's gradient at once from the
// closed-form derivative with respect to the student's logits:
//   reverse KL     dD/dz_s = s * (log s - log q - D)
//   forward KL     dF/dz_s = s - q
//   cross-entropy  dCE/dz_s = s - onehot(y)
//   grad h_s = (g dD/dz_s) W_s, summed over tp (one all-reduce at the end),
//   grad W_s = (g dD/dz_s)^T h_s (this rank's rows).
// The loss carries both gradients into autograd (its backward scales them by the incoming
// gradient), so the caller's backward() reaches the decoder exactly as through the LM head.
// Cost: the same four matrix products as the logits path (two forward, two backward);
// memory: a handful of [c * T, V/P] temporaries instead of [R, T, V/P] ones.
// The weights must not depend on the parameters (they are constants, as cord_weights is):
// a loss whose gradient is not sum_t g_t dD_t (PPO's clipped ratio) cannot use this path.
#include <torch/torch.h>

#include <functional>

#include "cord/comm/process_group.hpp"
#include "cord/distill/losses.hpp"

namespace cord::distill {

// One side's input to its LM head.
struct HeadInput {
  at::Tensor hidden;  // [R, T, d]: the final norm's output at the predicting positions
  at::Tensor weight;  // [V/P, d]: this tp rank's rows of the LM head (the embedding table when tied)
};

// The chunk's per-position term [c, T] (detached, replicated across tp) and the index of its
// first row -> the weights g [c, T] of those positions (0 where they do not count).
using ChunkWeights = std::function<at::Tensor(const at::Tensor& term, int64_t first_row)>;

struct ChunkedLoss {
  at::Tensor loss;  // scalar sum_t g_t D_t, differentiable into student.hidden and student.weight
  at::Tensor term;  // [R, T] D_t (detached), replicated across tp; 0 where targets < 0 for CE
};

// targets [R, T] int64 global ids, < 0 where a row has no position (those positions get
// g = 0 whatever `weights` says); teacher unused for kCrossEntropy. vocab_size: the real
// vocabulary (columns past it are padding). chunk_rows >= 1; R need not be a multiple.
ChunkedLoss chunked_token_loss(TokenLoss kind, const HeadInput& student, const HeadInput& teacher,
                               const at::Tensor& targets, int64_t vocab_size, int64_t chunk_rows,
                               const ChunkWeights& weights, const comm::ProcessGroup& tp_group);

}  // namespace cord::distill
