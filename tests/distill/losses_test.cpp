// CORD's losses: reverse and forward KL against a float64 direct computation (and under
// tp = 2 and 4 against tp = 1 when run under mpiexec -n 2 / 4), the weight formula's
// cases, aggregation, GRPO advantages and loss, no gradient into the teacher, and the
// judge.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "cord/distill/judge.hpp"
#include "cord/distill/losses.hpp"
#include "mpi_test_world.hpp"

namespace cord::distill {
namespace {

using testing::solo_group;
using testing::world;

// The tp group of the whole world: every rank one vocabulary slice.
comm::ProcessGroup world_tp() { return comm::ProcessGroup::world(world()); }

at::Tensor direct_kl(const at::Tensor& p_logits, const at::Tensor& r_logits) {
  const at::Tensor lp = torch::log_softmax(p_logits.to(torch::kDouble), -1);
  const at::Tensor lr = torch::log_softmax(r_logits.to(torch::kDouble), -1);
  return (lp.exp() * (lp - lr)).sum(-1);
}

TEST(Kl, ReverseAndForwardMatchFloat64OnOneRank) {
  torch::manual_seed(1);
  const at::Tensor student = torch::randn({3, 5, 17}) * 3;
  const at::Tensor teacher = torch::randn({3, 5, 17}) * 3;
  const at::Tensor reverse = reverse_kl(student, teacher, solo_group());
  const at::Tensor forward = forward_kl(student, teacher, solo_group());
  EXPECT_TRUE(torch::allclose(reverse.to(torch::kDouble), direct_kl(student, teacher), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(forward.to(torch::kDouble), direct_kl(teacher, student), 1e-5, 1e-6));
  EXPECT_GE(reverse.min().item<double>(), -1e-6);
  EXPECT_NEAR(reverse_kl(student, student, solo_group()).abs().max().item<double>(), 0.0, 1e-6);
}

TEST(Kl, VocabParallelEqualsTheWholeVocabulary) {
  const int size = world().size();
  torch::manual_seed(2);  // same on every rank
  const int64_t vocab = 8 * size;
  const at::Tensor student = (torch::randn({2, 4, vocab}) * 2).requires_grad_();
  const at::Tensor teacher = torch::randn({2, 4, vocab}) * 2;
  const at::Tensor reference = reverse_kl(student, teacher, solo_group());
  const at::Tensor grad_reference = torch::autograd::grad({reference.sum()}, {student})[0];
  const int64_t shard = vocab / size, offset = world().rank() * shard;
  const comm::ProcessGroup tp = world_tp();  // outlives the autograd graph that saved it
  const at::Tensor student_shard = student.detach().narrow(2, offset, shard).clone().requires_grad_();
  const at::Tensor parallel = reverse_kl(student_shard, teacher.narrow(2, offset, shard), tp);
  EXPECT_TRUE(torch::allclose(parallel, reference, 1e-5, 1e-6));
  const at::Tensor grad = torch::autograd::grad({parallel.sum()}, {student_shard})[0];
  EXPECT_TRUE(torch::allclose(grad, grad_reference.narrow(2, offset, shard), 1e-5, 1e-6));
  const at::Tensor forward = forward_kl(student_shard, teacher.narrow(2, offset, shard), tp);
  EXPECT_TRUE(torch::allclose(forward, forward_kl(student, teacher, solo_group()), 1e-5, 1e-6));
}

TEST(Kl, NoGradientReachesTheTeacher) {
  const at::Tensor student = torch::randn({2, 3, 11}).requires_grad_();
  const at::Tensor teacher = torch::randn({2, 3, 11}).requires_grad_();
  (reverse_kl(student, teacher, solo_group()).sum() + forward_kl(student, teacher, solo_group()).sum()).backward();
  EXPECT_TRUE(student.grad().defined());
  EXPECT_FALSE(teacher.grad().defined());
}

TEST(Kl, GradientMatchesFiniteDifferences) {
  torch::manual_seed(4);
  const at::Tensor student = torch::randn({1, 3, 6}, torch::kDouble).requires_grad_();
  const at::Tensor teacher = torch::randn({1, 3, 6}, torch::kDouble);
  const at::Tensor mask = torch::ones({1, 3}, torch::kBool);
  auto loss = [&](const at::Tensor& s) {
    const at::Tensor d = reverse_kl(s, teacher, solo_group()).to(torch::kDouble);
    return (cord_weights(d, mask, 2.0, 2.0, 1).to(torch::kDouble) * d).sum();
  };
  const at::Tensor grad = torch::autograd::grad({loss(student)}, {student})[0];
  const double eps = 1e-4;
  for (int64_t i = 0; i < student.numel(); ++i) {
    at::Tensor plus = student.detach().clone(), minus = student.detach().clone();
    plus.view(-1)[i] += eps;
    minus.view(-1)[i] -= eps;
    const double numeric = (loss(plus).item<double>() - loss(minus).item<double>()) / (2 * eps);
    EXPECT_NEAR(grad.view(-1)[i].item<double>(), numeric, 2e-3 * std::max(1.0, std::abs(numeric))) << i;
  }
}

at::Tensor row(std::vector<double> values) { return torch::tensor(values, torch::kDouble).unsqueeze(0); }

TEST(Weights, TopKSelectionAndLinearPositionDecay) {
  // T = 5, beta = 2: position weights 2, 1.75, 1.5, 1.25, 1. Top-2 by divergence: t=2 and t=4 (1-based).
  const at::Tensor w = cord_weights(row({0.1, 0.9, 0.2, 0.8, 0.3}), torch::ones({1, 5}, torch::kBool), 2.0, 2.0, 2);
  const std::vector<float> expected{2.0f, 3.5f, 1.5f, 2.5f, 1.0f};
  for (int t = 0; t < 5; ++t) EXPECT_FLOAT_EQ(w[0][t].item<float>(), expected[static_cast<size_t>(t)]) << t;
}

TEST(Weights, TiesGoToTheEarlierPositionAndPaddingGetsZero) {
  const at::Tensor mask = torch::tensor({true, true, true, false}, torch::kBool).unsqueeze(0);
  const at::Tensor w = cord_weights(row({0.5, 0.5, 0.5, 9.0}), mask, 3.0, 1.0, 1);
  EXPECT_FLOAT_EQ(w[0][0].item<float>(), 3.0f);
  EXPECT_FLOAT_EQ(w[0][1].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(w[0][2].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(w[0][3].item<float>(), 0.0f);
}

TEST(Weights, KAtLeastTAndSinglePositionAndUnweighted) {
  const at::Tensor all = cord_weights(row({1, 2, 3}), torch::ones({1, 3}, torch::kBool), 2.0, 1.0, 20);
  EXPECT_TRUE(torch::equal(all, torch::full({1, 3}, 2.0f)));
  const at::Tensor single = cord_weights(row({0.4}), torch::ones({1, 1}, torch::kBool), 2.0, 2.5, 20);
  EXPECT_FLOAT_EQ(single[0][0].item<float>(), 5.0f);  // alpha * beta
  const at::Tensor ones = cord_weights(row({5, 1, 3, 2}), torch::ones({1, 4}, torch::kBool), 1.0, 1.0, 2);
  EXPECT_TRUE(torch::equal(ones, torch::ones({1, 4})));
  EXPECT_THROW(cord_weights(row({1, 2}), torch::tensor({false, true}, torch::kBool).unsqueeze(0), 2, 2, 1), Error);
}

TEST(Weights, AFractionOfEachRolloutReplacesTopK) {
  // Two rollouts of 10 and 4 positions, fraction 0.25: K = ceil(2.5) = 3 and ceil(1.0) = 1,
  // whatever top_k says.
  at::Tensor d = torch::zeros({2, 10}, torch::kDouble);
  for (int t = 0; t < 10; ++t) d[0][t] = static_cast<double>(t);      // top 3: t = 9, 8, 7
  for (int t = 0; t < 4; ++t) d[1][t] = static_cast<double>(4 - t);   // top 1: t = 0
  at::Tensor mask = torch::zeros({2, 10}, torch::kBool);
  mask[0].fill_(true);
  mask[1].narrow(0, 0, 4).fill_(true);
  const at::Tensor w = cord_weights(d, mask, 2.0, 1.0, 20, 0.25);
  EXPECT_EQ(w[0].eq(2.0f).sum().item<int64_t>(), 3);
  for (const int t : {7, 8, 9}) EXPECT_FLOAT_EQ(w[0][t].item<float>(), 2.0f) << t;
  EXPECT_EQ(w[1].eq(2.0f).sum().item<int64_t>(), 1);
  EXPECT_FLOAT_EQ(w[1][0].item<float>(), 2.0f);
  EXPECT_TRUE(torch::equal(cord_weights(d, mask, 2.0, 1.0, 3, 0), cord_weights(d, mask, 2.0, 1.0, 3)));
  EXPECT_THROW(cord_weights(d, mask, 2.0, 1.0, 3, 1.5), Error);
}

TEST(Aggregate, SumTokenMeanAndSequenceMean) {
  const at::Tensor loss = torch::tensor({{1.0, 2.0, 3.0}, {4.0, 0.0, 0.0}});
  const at::Tensor mask = torch::tensor({{true, true, true}, {true, false, false}});
  EXPECT_DOUBLE_EQ(aggregate(loss, mask, Aggregation::kSum).item<double>(), 5.0);  // (6 + 4) / 2
  EXPECT_DOUBLE_EQ(aggregate(loss, mask, Aggregation::kTokenMean).item<double>(), 2.5);
  EXPECT_DOUBLE_EQ(aggregate(loss, mask, Aggregation::kSequenceMean).item<double>(), 3.0);  // (2 + 4) / 2
}

TEST(Grpo, AdvantagesAndLoss) {
  const at::Tensor rewards = torch::tensor({{1.0, 0.0, 1.0, 1.0}, {0.0, 0.0, 0.0, 0.0}});
  const at::Tensor a = grpo_advantages(rewards, false);
  EXPECT_TRUE(torch::allclose(a, torch::tensor({{0.25, -0.75, 0.25, 0.25}, {0.0, 0.0, 0.0, 0.0}})));
  const at::Tensor normalized = grpo_advantages(rewards, true);
  EXPECT_NEAR(normalized[0][1].item<double>(), -0.75 / std::sqrt(0.1875), 1e-4);
  EXPECT_EQ(normalized[1].abs().sum().item<double>(), 0.0);  // all equal: no signal, no NaN
  const at::Tensor log_probs = torch::tensor({{-1.0, -2.0, -3.0, -4.0}, {-1.0, -1.0, -1.0, -1.0}}).requires_grad_();
  const at::Tensor loss = grpo_loss(log_probs, a);
  // prompt 0: -(0.25*-1 + -0.75*-2 + 0.25*-3 + 0.25*-4)/4 = 0.125; prompt 1: 0
  EXPECT_NEAR(loss.item<double>(), 0.0625, 1e-6);
  loss.backward();
  EXPECT_NEAR(log_probs.grad()[0][1].item<double>(), 0.75 / 8, 1e-6);
}

TEST(Judge, AgreementAndGroundTruth) {
  EXPECT_TRUE(answers_agree(std::string("42"), std::string("42"), 0));
  EXPECT_TRUE(answers_agree(std::string("42"), std::string("42.0000001"), 1e-6));
  EXPECT_FALSE(answers_agree(std::string("41"), std::string("42"), 1e-6));
  EXPECT_TRUE(answers_agree(std::string("Madrid"), std::string("Madrid"), 1e-6));
  EXPECT_FALSE(answers_agree(std::string("B"), std::string("b"), 1e-6));  // letters exactly
  EXPECT_FALSE(answers_agree(std::nullopt, std::string("42"), 1e-6));     // unparseable
  EXPECT_FALSE(answers_agree(std::nullopt, std::nullopt, 1e-6));
  const auto agreement = make_judge(JudgeKind::kAgreement, 1e-6);
  EXPECT_EQ(agreement->reward(std::string("7"), std::string("7"), "9"), 1);  // agrees with the text branch
  EXPECT_EQ(agreement->reward(std::string("9"), std::string("7"), "9"), 0);
  const auto truth = make_judge(JudgeKind::kGroundTruth, 1e-6);
  EXPECT_EQ(truth->reward(std::string("9"), std::string("7"), "9"), 1);
}

}  // namespace
}  // namespace cord::distill
