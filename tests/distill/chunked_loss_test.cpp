// chunked_token_loss against the logits path (the head's logits, token_terms, cord_weights,
// aggregate, autograd): the same loss, per-position term and gradients into the hidden
// states and the head's rows, for every kind, chunk sizes that do and do not divide the
// rows, a padded vocabulary, and (under mpiexec -n 2 / 4) the vocabulary split over tp =
// the world against tp = 1 on the whole head.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "cord/comm/collectives.hpp"
#include "cord/distill/chunked_loss.hpp"
#include "cord/distill/losses.hpp"
#include "cord/model/tensor_parallel.hpp"
#include "mpi_test_world.hpp"

namespace cord::distill {
namespace {

using testing::solo_group;
using testing::world;

constexpr int64_t kRows = 5, kLength = 6, kDim = 8, kTeacherDim = 12;
constexpr double kAlpha = 2.0, kBeta = 1.5;
constexpr int64_t kTopK = 2;

struct Case {
  at::Tensor student_hidden, teacher_hidden;  // [R, T, d], [R, T, d_t]
  at::Tensor student_head, teacher_head;      // [V, d], [V, d_t] (whole vocabulary)
  at::Tensor targets, mask;                   // [R, T]
  int64_t vocab = 0;
};

// The same draws on every rank; rows of different lengths (a contiguous prefix each).
Case make_case(at::ScalarType dtype, int64_t vocab) {
  torch::manual_seed(7);
  const auto opts = torch::TensorOptions().dtype(dtype);
  Case c;
  c.vocab = vocab;
  c.student_hidden = torch::randn({kRows, kLength, kDim}, opts);
  c.teacher_hidden = torch::randn({kRows, kLength, kTeacherDim}, opts);
  c.student_head = torch::randn({vocab, kDim}, opts) * 0.7;
  c.teacher_head = torch::randn({vocab, kTeacherDim}, opts) * 0.7;
  const at::Tensor lengths = torch::tensor({6, 3, 1, 5, 6});
  c.mask = torch::arange(kLength).unsqueeze(0) < lengths.unsqueeze(1);
  c.targets = torch::randint(0, vocab, {kRows, kLength}).masked_fill(~c.mask, -1);
  return c;
}

// The loss's weights on each position: CORD's for reverse KL, the mask otherwise; / R (sum),
// in the term's precision (as aggregate divides).
at::Tensor position_weights(TokenLoss kind, const at::Tensor& term, const at::Tensor& mask) {
  const at::Tensor w = kind == TokenLoss::kReverseKl ? cord_weights(term, mask, kAlpha, kBeta, kTopK)
                                                     : mask.to(torch::kFloat);
  return w.to(term.scalar_type()) / static_cast<double>(kRows);
}

struct Result {
  at::Tensor loss, term, grad_hidden, grad_head;  // grad_head: [V, d] rows of the whole vocabulary
};

// The logits path on one rank with the whole vocabulary.
Result logits_path(TokenLoss kind, const Case& c) {
  const at::Tensor h = c.student_hidden.clone().requires_grad_();
  const at::Tensor w = c.student_head.clone().requires_grad_();
  const at::Tensor z_s = at::matmul(h, w.t());
  const at::Tensor z_t = at::matmul(c.teacher_hidden, c.teacher_head.t());
  const TokenTerms terms = token_terms(kind, z_s, z_t, c.targets, c.mask, kAlpha, kBeta, kTopK, solo_group());
  const at::Tensor loss = aggregate(terms.per_position, c.mask, Aggregation::kSum);
  loss.backward();
  const at::Tensor term = terms.divergence.defined() ? terms.divergence : terms.per_position;
  return {loss.detach(), term.detach(), h.grad(), w.grad()};
}

// The chunked path with the vocabulary split over `tp` (padded when tp does not divide V);
// grad_head gathered back to [V, d].
Result chunked_path(TokenLoss kind, const Case& c, int64_t chunk_rows, const comm::ProcessGroup& tp) {
  const int64_t local = model::rows_per_part(c.vocab, tp.size(), /*pad=*/true, "vocabulary");
  const int64_t start = tp.rank() * local;
  const int64_t real = std::max<int64_t>(0, std::min(local, c.vocab - start));
  auto shard = [&](const at::Tensor& head) {
    at::Tensor out = torch::zeros({local, head.size(1)}, head.options());
    if (real > 0) out.narrow(0, 0, real).copy_(head.narrow(0, start, real));
    return out;
  };
  const at::Tensor h = c.student_hidden.clone().requires_grad_();
  const at::Tensor w = shard(c.student_head).requires_grad_();
  int64_t calls = 0;
  const ChunkWeights weights = [&](const at::Tensor& term, int64_t first_row) {
    ++calls;
    return position_weights(kind, term, c.mask.narrow(0, first_row, term.size(0)));
  };
  const ChunkedLoss out = chunked_token_loss(kind, {h, w}, {c.teacher_hidden, shard(c.teacher_head)}, c.targets,
                                             c.vocab, chunk_rows, weights, tp);
  EXPECT_EQ(calls, (kRows + chunk_rows - 1) / chunk_rows) << "one weights call per chunk";
  out.loss.backward();
  // Reassemble the head's gradient: every rank's real rows into [V, d].
  at::Tensor grad_head = torch::zeros_like(c.student_head);
  if (real > 0) grad_head.narrow(0, start, real).copy_(w.grad().narrow(0, 0, real));
  comm::all_reduce(tp, grad_head, comm::ReduceOp::kSum);
  if (real < local) {
    EXPECT_EQ(w.grad().narrow(0, real, local - real).abs().max().item<double>(), 0.0) << "padding rows";
  }
  return {out.loss.detach(), out.term, h.grad(), grad_head};
}

double relative(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).norm().item<double>() /
         std::max(b.to(torch::kDouble).norm().item<double>(), 1e-300);
}

void expect_same(const Result& chunked, const Result& reference, double tolerance, const std::string& what) {
  EXPECT_LE(relative(chunked.loss, reference.loss), tolerance) << what << ": loss";
  EXPECT_LE(relative(chunked.term, reference.term), tolerance) << what << ": per-position term";
  EXPECT_LE(relative(chunked.grad_hidden, reference.grad_hidden), tolerance) << what << ": grad of the hidden states";
  EXPECT_LE(relative(chunked.grad_head, reference.grad_head), tolerance) << what << ": grad of the head";
}

const char* name(TokenLoss kind) {
  return kind == TokenLoss::kReverseKl ? "reverse KL" : kind == TokenLoss::kForwardKl ? "forward KL" : "cross-entropy";
}

class ChunkedLossKinds : public ::testing::TestWithParam<TokenLoss> {};

TEST_P(ChunkedLossKinds, EqualsTheLogitsPathInFloat64) {
  const comm::ProcessGroup tp = comm::ProcessGroup::world(world());
  const Case c = make_case(torch::kDouble, 8 * world().size() + 3);  // padded under tp > 1
  const Result reference = logits_path(GetParam(), c);
  for (const int64_t chunk : {int64_t{1}, int64_t{2}, kRows, kRows + 4}) {
    expect_same(chunked_path(GetParam(), c, chunk, tp), reference, 1e-12,
                std::string(name(GetParam())) + ", chunk " + std::to_string(chunk));
  }
}

TEST_P(ChunkedLossKinds, EqualsTheLogitsPathInFloat32) {
  const comm::ProcessGroup tp = comm::ProcessGroup::world(world());
  const Case c = make_case(torch::kFloat, 8 * world().size() + 3);
  const Result reference = logits_path(GetParam(), c);
  expect_same(chunked_path(GetParam(), c, 2, tp), reference, 1e-6, name(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Kinds, ChunkedLossKinds,
                         ::testing::Values(TokenLoss::kReverseKl, TokenLoss::kForwardKl, TokenLoss::kCrossEntropy));

TEST(ChunkedLoss, NoGradientReachesTheTeacherAndMaskedPositionsCountZero) {
  const Case c = make_case(torch::kDouble, 11);
  const at::Tensor h = c.student_hidden.clone().requires_grad_();
  const at::Tensor w = c.student_head.clone().requires_grad_();
  const at::Tensor h_t = c.teacher_hidden.clone().requires_grad_();
  const at::Tensor w_t = c.teacher_head.clone().requires_grad_();
  // Weights of 1 everywhere: only the targets' -1 may silence a position.
  const ChunkWeights ones = [](const at::Tensor& term, int64_t) { return torch::ones_like(term); };
  const ChunkedLoss out = chunked_token_loss(TokenLoss::kReverseKl, {h, w}, {h_t, w_t}, c.targets, c.vocab, 2, ones,
                                             solo_group());
  out.loss.backward();
  EXPECT_FALSE(h_t.grad().defined());
  EXPECT_FALSE(w_t.grad().defined());
  const at::Tensor masked_grad = h.grad().masked_select(~c.mask.unsqueeze(-1).expand_as(h));
  EXPECT_EQ(masked_grad.abs().max().item<double>(), 0.0) << "positions past a row's end get no gradient";
  const double expected = (out.term * c.mask.to(out.term.scalar_type())).sum().item<double>();
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-12);
}

TEST(ChunkedLoss, AggregationWeightsReduceAsAggregate) {
  const Case c = make_case(torch::kFloat, 11);
  const at::Tensor x = torch::randn({kRows, kLength});
  for (const Aggregation a : {Aggregation::kSum, Aggregation::kTokenMean, Aggregation::kSequenceMean}) {
    EXPECT_NEAR((aggregation_weights(c.mask, a) * x).sum().item<double>(), aggregate(x, c.mask, a).item<double>(), 1e-5);
  }
}

TEST(ChunkedLoss, BadInputIsNamed) {
  const Case c = make_case(torch::kFloat, 11);
  const ChunkWeights ones = [](const at::Tensor& term, int64_t) { return torch::ones_like(term); };
  const HeadInput student{c.student_hidden, c.student_head}, teacher{c.teacher_hidden, c.teacher_head};
  auto message = [&](auto&& call) {
    try {
      call();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { chunked_token_loss(TokenLoss::kReverseKl, student, teacher, c.targets, 11, 0, ones, solo_group()); })
                .find("chunk_rows must be >= 1"),
            std::string::npos);
  const HeadInput short_teacher{c.teacher_hidden.narrow(1, 0, 2), c.teacher_head};
  EXPECT_NE(message([&] {
              chunked_token_loss(TokenLoss::kForwardKl, student, short_teacher, c.targets, 11, 2, ones, solo_group());
            }).find("the teacher's hidden states must be"),
            std::string::npos);
  const ChunkWeights wrong = [](const at::Tensor&, int64_t) { return torch::ones({1}); };
  EXPECT_NE(message([&] {
              chunked_token_loss(TokenLoss::kCrossEntropy, student, teacher, c.targets, 11, 2, wrong, solo_group());
            }).find("the weights of rows 0.. must be [2, 6]"),
            std::string::npos);
}

}  // namespace
}  // namespace cord::distill
