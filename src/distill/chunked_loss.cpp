#include "cord/distill/chunked_loss.hpp"

#include <string>

#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "cord/model/tensor_parallel.hpp"

namespace cord::distill {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// At least float32: bf16/fp16 logits are upcast, float64 (the tests) kept.
at::Tensor float32(const at::Tensor& t) { return at::isReducedFloatingType(t.scalar_type()) ? t.to(torch::kFloat) : t; }

struct Request {
  TokenLoss kind;
  int64_t vocab_size;
  int64_t chunk_rows;
  const ChunkWeights* weights;
  const comm::ProcessGroup* tp;
};

// One chunk's per-position term [n] and, when asked, its derivative with respect to the
// student's logits [n, V/P] (unscaled by the weights).
struct ChunkTerms {
  at::Tensor term;
  at::Tensor grad_logits;
};

ChunkTerms chunk_terms(const Request& r, const at::Tensor& z_s, const at::Tensor& z_t, const at::Tensor& targets,
                       bool with_grad) {
  const comm::ProcessGroup& tp = *r.tp;
  const at::Tensor log_s = model::vocab_parallel_log_softmax(z_s, tp);
  const at::Tensor s = log_s.exp();
  ChunkTerms out;
  switch (r.kind) {
    case TokenLoss::kReverseKl: {
      const at::Tensor diff = log_s - model::vocab_parallel_log_softmax(z_t, tp);
      out.term = model::vocab_parallel_sum(s * diff, tp);
      if (with_grad) out.grad_logits = s * (diff - out.term.unsqueeze(-1));
      return out;
    }
    case TokenLoss::kForwardKl: {
      const at::Tensor log_q = model::vocab_parallel_log_softmax(z_t, tp);
      const at::Tensor q = log_q.exp();
      out.term = model::vocab_parallel_sum(q * (log_q - log_s), tp);
      if (with_grad) out.grad_logits = s - q;
      return out;
    }
    case TokenLoss::kCrossEntropy: {
      const int64_t local = z_s.size(-1), start = tp.rank() * local;
      const at::Tensor mine = ((targets >= start) & (targets < start + local)).to(s.scalar_type());
      const at::Tensor index = (targets - start).clamp(0, local - 1).unsqueeze(-1);
      out.term = -model::tp::reduce_from(log_s.gather(-1, index).squeeze(-1) * mine, tp);
      if (with_grad) out.grad_logits = s.scatter_add(-1, index, -mine.unsqueeze(-1));
      return out;
    }
    case TokenLoss::kNone:
      break;
  }
  throw Error("chunked_token_loss: the method has no token-level loss");
}

// This rank's logits slice of flattened hidden states [n, d] -> [n, V/P], padding masked.
at::Tensor head_logits(const at::Tensor& hidden, const at::Tensor& weight, const Request& r) {
  return model::mask_vocab_padding(float32(at::matmul(hidden, weight.t())), r.vocab_size, *r.tp);
}

// The loss and the detached term as outputs; the gradients with respect to the student's
// hidden states and head rows are formed in forward and only scaled in backward.
struct FusedHeadLoss : torch::autograd::Function<FusedHeadLoss> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& h_s, const at::Tensor& w_s,
                               const at::Tensor& h_t, const at::Tensor& w_t, const at::Tensor& targets,
                               const Request* r) {
    const bool grad_hidden = h_s.requires_grad(), grad_weight = w_s.requires_grad();
    const int64_t rows = h_s.size(0), length = h_s.size(1), dim = h_s.size(2);
    const at::Tensor term = at::zeros({rows, length}, h_s.options().dtype(float32(h_s).scalar_type()));
    at::Tensor loss = at::zeros({}, term.options());
    at::Tensor d_hidden = grad_hidden ? at::zeros_like(h_s) : at::Tensor();
    at::Tensor d_weight = grad_weight ? at::zeros_like(w_s) : at::Tensor();
    for (int64_t begin = 0; begin < rows; begin += r->chunk_rows) {
      const int64_t count = std::min(r->chunk_rows, rows - begin);
      const at::Tensor hs = h_s.narrow(0, begin, count).reshape({count * length, dim});
      const at::Tensor tg = targets.narrow(0, begin, count).reshape({count * length});
      const at::Tensor z_t = r->kind == TokenLoss::kCrossEntropy
                                 ? at::Tensor()
                                 : head_logits(h_t.narrow(0, begin, count).reshape({count * length, -1}), w_t, *r);
      const ChunkTerms terms = chunk_terms(*r, head_logits(hs, w_s, *r), z_t, tg, grad_hidden || grad_weight);
      const at::Tensor chunk_term = terms.term.view({count, length});
      const at::Tensor given = (*r->weights)(chunk_term, begin);
      CORD_CHECK(given.sizes() == chunk_term.sizes(), "chunked_token_loss: the weights of rows " +
                                                          std::to_string(begin) + ".. must be [" +
                                                          std::to_string(count) + ", " + std::to_string(length) + "]");
      const at::Tensor g =
          given.to(term.scalar_type()) * (targets.narrow(0, begin, count) >= 0).to(term.scalar_type());
      term.narrow(0, begin, count).copy_(chunk_term);
      loss += (g * chunk_term).sum();
      if (!terms.grad_logits.defined()) continue;
      const at::Tensor dz = (terms.grad_logits * g.reshape({count * length, 1})).to(h_s.scalar_type());
      if (grad_hidden) d_hidden.narrow(0, begin, count).copy_(at::matmul(dz, w_s).view({count, length, dim}));
      if (grad_weight) d_weight.add_(at::matmul(dz.t(), hs).to(w_s.scalar_type()));
    }
    // Each rank's products cover its vocabulary slice: the hidden states' gradient sums them
    // (the all-reduce the LM head's copy_to does in its backward).
    if (grad_hidden && r->tp->size() > 1) comm::all_reduce(*r->tp, d_hidden, comm::ReduceOp::kSum);
    ctx->saved_data["d_hidden"] = d_hidden;
    ctx->saved_data["d_weight"] = d_weight;
    ctx->mark_non_differentiable({term});
    return {loss, term};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor d_hidden = ctx->saved_data["d_hidden"].toTensor();
    const at::Tensor d_weight = ctx->saved_data["d_weight"].toTensor();
    const at::Tensor scale = grads[0];
    return {d_hidden.defined() ? d_hidden * scale.to(d_hidden.scalar_type()) : at::Tensor(),
            d_weight.defined() ? d_weight * scale.to(d_weight.scalar_type()) : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check_inputs(TokenLoss kind, const HeadInput& student, const HeadInput& teacher, const at::Tensor& targets,
                  int64_t chunk_rows) {
  CORD_CHECK(kind != TokenLoss::kNone, "chunked_token_loss: the method has no token-level loss");
  CORD_CHECK(chunk_rows >= 1, "chunked_token_loss: chunk_rows must be >= 1, got " + std::to_string(chunk_rows));
  CORD_CHECK(student.hidden.dim() == 3 && student.weight.dim() == 2 &&
                 student.hidden.size(2) == student.weight.size(1),
             "chunked_token_loss: the student's hidden states must be [R, T, d] and its head [V/P, d]");
  CORD_CHECK(targets.dim() == 2 && targets.size(0) == student.hidden.size(0) &&
                 targets.size(1) == student.hidden.size(1),
             "chunked_token_loss: targets must be [R, T] like the student's hidden states");
  if (kind == TokenLoss::kCrossEntropy) return;
  CORD_CHECK(teacher.hidden.dim() == 3 && teacher.hidden.size(0) == student.hidden.size(0) &&
                 teacher.hidden.size(1) == student.hidden.size(1),
             "chunked_token_loss: the teacher's hidden states must be [R, T, d_t] with the student's R and T");
  CORD_CHECK(teacher.weight.dim() == 2 && teacher.weight.size(0) == student.weight.size(0) &&
                 teacher.weight.size(1) == teacher.hidden.size(2),
             "chunked_token_loss: the teacher's head must be [V/P, d_t] over the student's vocabulary slice");
}

}  // namespace

ChunkedLoss chunked_token_loss(TokenLoss kind, const HeadInput& student, const HeadInput& teacher,
                               const at::Tensor& targets, int64_t vocab_size, int64_t chunk_rows,
                               const ChunkWeights& weights, const comm::ProcessGroup& tp_group) {
  check_inputs(kind, student, teacher, targets, chunk_rows);
  const Request request{kind, vocab_size, chunk_rows, &weights, &tp_group};
  const bool teacher_used = kind != TokenLoss::kCrossEntropy;
  // The teacher never receives a gradient: its inputs enter detached (empty, not undefined,
  // when unused: autograd records every input's metadata).
  const at::Tensor none = at::empty({0}, student.hidden.options());
  const variable_list out = FusedHeadLoss::apply(student.hidden, student.weight,
                                                 teacher_used ? teacher.hidden.detach() : none,
                                                 teacher_used ? teacher.weight.detach() : none, targets, &request);
  return {out[0], out[1]};
}

}  // namespace cord::distill
