// AdamW against libtorch's reference implementation, the LR schedule's shape, and
// tensor-parallel-aware gradient-norm clipping (under mpiexec -n 1, 2 and 4).
#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "cord/comm/collectives.hpp"
#include "cord/train/optimizer.hpp"
#include "model_fixtures.hpp"
#include "mpi_test_world.hpp"

namespace cord::train {
namespace {

using testing::solo_group;

// A matrix (decayed) and a vector (not decayed) with fixed gradients.
std::vector<model::ParamShard> two_params(const at::Tensor& matrix, const at::Tensor& vector) {
  model::ParamShard m;
  m.name = "layer.weight";
  m.param = matrix;
  model::ParamShard v;
  v.name = "layer.norm.weight";
  v.param = vector;
  return {m, v};
}

// A decayed matrix and an undecayed vector under our AdamW, and twins with the same start
// values under libtorch's (one reference optimizer each, the matrix's at `matrix_lr`).
struct AgainstLibtorch {
  at::Tensor start_matrix = torch::randn({4, 3}), start_vector = torch::randn({3});
  at::Tensor matrix = start_matrix.clone().requires_grad_(), vector = start_vector.clone().requires_grad_();
  at::Tensor ref_matrix = start_matrix.clone().requires_grad_(), ref_vector = start_vector.clone().requires_grad_();
  AdamW ours{two_params(matrix, vector), AdamWOptions{0.9, 0.95, 1e-8, 0.1}};
  torch::optim::AdamW ref_decay, ref_plain;

  explicit AgainstLibtorch(double matrix_lr)
      : ref_decay({ref_matrix}, torch::optim::AdamWOptions(matrix_lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1)),
        ref_plain({ref_vector}, torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0)) {}

  // `steps` updates of ours at lr 1e-2 and of the references, twins given the same gradient.
  void step(int steps) {
    for (int i = 0; i < steps; ++i) {
      const at::Tensor gm = torch::randn({4, 3}), gv = torch::randn({3});
      matrix.mutable_grad() = gm.clone();
      vector.mutable_grad() = gv.clone();
      ref_matrix.mutable_grad() = gm.clone();
      ref_vector.mutable_grad() = gv.clone();
      ours.step(1e-2);
      ref_decay.step();
      ref_plain.step();
    }
  }
  bool same() const {
    return torch::allclose(matrix, ref_matrix, 1e-6, 1e-7) && torch::allclose(vector, ref_vector, 1e-6, 1e-7);
  }
};

TEST(AdamW, MatchesLibtorchAdamWOnDecayedAndUndecayedParameters) {
  AgainstLibtorch t(1e-2);
  t.step(5);
  EXPECT_TRUE(t.same());
  EXPECT_EQ(t.ours.steps_taken(), 5);
  EXPECT_TRUE(t.ours.state()[0].decay);
  EXPECT_FALSE(t.ours.state()[1].decay);
}

TEST(AdamW, ScaledParametersLearnAtTheirShareOfTheLearningRate) {
  // The matrix, scaled by 0.25, follows libtorch's AdamW at lr / 4 (decay included); the
  // vector keeps the full rate.
  AgainstLibtorch t(2.5e-3);
  EXPECT_EQ(t.ours.scale_lr("layer.w", 0.25), 1);
  EXPECT_EQ(t.ours.scale_lr("decoder.", 0.5), 0);
  t.step(3);
  EXPECT_TRUE(t.same());
  EXPECT_FALSE(torch::allclose(t.matrix, t.start_matrix));
}

TEST(AdamW, SkipsFrozenParameters) {
  at::Tensor frozen = torch::randn({2, 2});
  at::Tensor trained = torch::randn({2, 2}).requires_grad_();
  AdamW opt(two_params(trained, frozen), AdamWOptions{});
  ASSERT_EQ(opt.state().size(), 1U);
  EXPECT_EQ(opt.state()[0].name, "layer.weight");
}

TEST(AdamW, Zero1ShardsTheStateAndGivesTheSameUpdate) {
  const comm::World& world = testing::world();
  const comm::ProcessGroup dp = comm::ProcessGroup::world(world);
  const comm::ProcessGroup solo = solo_group();
  model::Lalm plain(testing::tiny_model_config(), solo);
  model::Lalm sharded(testing::tiny_model_config(), solo);  // same init; dp-replicated
  AdamW plain_opt(model::sharded_parameters(*plain, solo), AdamWOptions{});
  AdamW sharded_opt(model::sharded_parameters(*sharded, solo), AdamWOptions{}, &dp);
  for (int step = 0; step < 3; ++step) {
    // The same gradients on every rank, as after dp averaging.
    for (auto* m : {&plain, &sharded}) {
      for (const auto& p : (*m)->named_parameters()) {
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(step * 1000 + p.value().numel()));
        p.value().mutable_grad() = at::normal(0.0, 1.0, p.value().sizes(), gen);
      }
    }
    plain_opt.step(1e-2);
    sharded_opt.step(1e-2);
  }
  const auto a = plain->named_parameters();
  const auto b = sharded->named_parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].value(), b[i].value())) << a[i].key();
  // Each rank holds about 1/dp of the state.
  const double share = static_cast<double>(sharded_opt.local_state_numel()) / static_cast<double>(plain_opt.local_state_numel());
  EXPECT_LE(share, 1.0 / dp.size() + 0.25) << "state share " << share;
  at::Tensor total = torch::tensor({sharded_opt.local_state_numel()}, torch::kLong);
  comm::all_reduce(dp, total, comm::ReduceOp::kSum);
  EXPECT_EQ(total.item<int64_t>(), plain_opt.local_state_numel());
}

TEST(LrSchedule, WarmupThenCosineToTheFloor) {
  const LrSchedule s{1e-3, 1e-4, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(9), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);
  EXPECT_NEAR(s.at(60), 5.5e-4, 1e-12);  // half way down the cosine
  EXPECT_DOUBLE_EQ(s.at(110), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(1000), 1e-4);
  for (int64_t step = 10; step < 110; ++step) EXPECT_GE(s.at(step), s.at(step + 1));
}

TEST(GradNorm, TensorParallelNormEqualsTheSingleRankNorm) {
  const comm::World& world = testing::world();
  const comm::ProcessGroups groups =
      comm::make_process_groups(world, comm::ParallelDims::resolve(0, world.size(), world.size()), false);
  const comm::ProcessGroup solo = solo_group();
  auto loss_of = [](model::Lalm& model) {
    const model::DecoderBatch text = model::assemble_text(model, testing::token_rows({5, 7}, 64, 1),
                                                          testing::token_rows({4, 4}, 64, 2), testing::tiny_tokens(),
                                                          model::Padding::kRight);
    const model::TokenLoss loss = model::response_cross_entropy(
        model->decoder->forward(text.embeds, text.positions, text.mask), text.targets, model->tp_group());
    return loss.sum / static_cast<double>(loss.tokens);
  };
  model::Lalm reference(testing::tiny_model_config(), solo);
  loss_of(reference).backward();
  model::Lalm parallel(testing::tiny_model_config(), groups.tp);
  loss_of(parallel).backward();
  const double ref_norm = global_grad_norm(model::sharded_parameters(*reference, solo), solo);
  const auto shards = model::sharded_parameters(*parallel, groups.tp);
  const double norm = global_grad_norm(shards, groups.tp);
  EXPECT_NEAR(norm, ref_norm, 1e-5 * ref_norm);
  EXPECT_GT(ref_norm, 0);

  const double factor = clip_grad_norm(shards, norm, norm / 4);
  EXPECT_DOUBLE_EQ(factor, 0.25);
  EXPECT_NEAR(global_grad_norm(shards, groups.tp), norm / 4, 1e-5 * norm);
  EXPECT_DOUBLE_EQ(clip_grad_norm(shards, norm / 4, norm), 1.0);  // under the limit: untouched
}

TEST(NonFinite, OneRankSeeingNaNMakesEveryRankSkip) {
  const comm::ProcessGroup world = comm::ProcessGroup::world(testing::world());
  EXPECT_TRUE(finite_on_all_ranks(1.5, world));
  const double last_rank_nan = world.rank() == world.size() - 1 ? std::nan("") : 2.0;
  EXPECT_FALSE(finite_on_all_ranks(last_rank_nan, world));
  EXPECT_FALSE(finite_on_all_ranks(world.rank() == 0 ? INFINITY : 1.0, world));
}

}  // namespace
}  // namespace cord::train
