// Tensor- and data-parallel equivalence under mpiexec: for every dp x tp layout of the
// world, logits, every gradient (after the bucketed dp averaging) and one SGD update
// equal those of the tp = 1 model on the whole batch, slice by slice, within 1e-5
// relative (fp32; a tensor far below the largest value is held to 1e-3 of that value).
// Greedy generation under tp gives the tp = 1 tokens.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "cord/model/data_parallel.hpp"
#include "cord/model/generate.hpp"
#include "model_fixtures.hpp"
#include "mpi_test_world.hpp"

namespace cord::model {
namespace {

using testing::mel_batch;
using testing::tiny_model_config;
using testing::tiny_tokens;
using testing::token_rows;

constexpr int64_t kGlobalBatch = 4;  // per conditioning; divisible by every dp of 1, 2, 4

std::vector<int> divisors(int n) {
  std::vector<int> result;
  for (int d = 1; d <= n; ++d) {
    if (n % d == 0) result.push_back(d);
  }
  return result;
}

// max |a - b| over max |b|, or over `floor` when b is smaller than that.
double relative_difference(const at::Tensor& a, const at::Tensor& b, double floor = 1e-12) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), floor);
}

// Token ids in [6, vocab).
struct GlobalBatch {
  explicit GlobalBatch(int64_t vocab = 64)
      : questions(token_rows({3, 8, 5, 6}, vocab, 21)), responses(token_rows({5, 5, 5, 5}, vocab, 22)) {}
  TokenRows questions;
  TokenRows responses;  // equal token counts on every dp rank
  std::pair<at::Tensor, at::Tensor> mel = mel_batch({19, 40, 27, 33}, 8, 23);
};

template <typename T>
std::vector<T> rows(const std::vector<T>& all, int64_t begin, int64_t count) {
  return std::vector<T>(all.begin() + begin, all.begin() + begin + count);
}

struct Outputs {
  at::Tensor loss;
  at::Tensor text_logits;  // [b, T, V] full vocabulary
};

// Mean response cross-entropy of sequences [begin, begin + count) of both conditionings.
Outputs forward_loss(Lalm& model, const GlobalBatch& batch, int64_t begin, int64_t count) {
  const DecoderBatch text = assemble_text(model, rows(batch.questions, begin, count),
                                          rows(batch.responses, begin, count), tiny_tokens(), Padding::kRight);
  const DecoderBatch audio =
      assemble_audio(model, batch.mel.first.narrow(0, begin, count), batch.mel.second.narrow(0, begin, count),
                     rows(batch.responses, begin, count), tiny_tokens(), Padding::kRight);
  const at::Tensor text_logits = model->decoder->forward(text.embeds, text.positions, text.mask);
  const TokenLoss t = response_cross_entropy(text_logits, text.targets, model->tp_group());
  const TokenLoss a = response_cross_entropy(model->decoder->forward(audio.embeds, audio.positions, audio.mask),
                                             audio.targets, model->tp_group());
  return {(t.sum + a.sum) / static_cast<double>(t.tokens + a.tokens), gather_vocab(text_logits, model->tp_group(), model->config().vocab_size)};
}

std::map<std::string, at::Tensor> by_name(const Lalm& model, bool grads) {
  std::map<std::string, at::Tensor> result;
  for (const auto& p : model->named_parameters()) result[p.key()] = grads ? p.value().grad().clone() : p.value().detach().clone();
  return result;
}

// Each local shard against its slice of the reference's full tensor.
// A tensor whose values are all far below the model's largest (the key bias's gradient is
// zero up to rounding: softmax ignores a shift shared by all keys) is compared against
// 1e-3 of that largest value instead of its own, so that rounding noise is not a failure.
void expect_shards_match(const Lalm& parallel, const std::map<std::string, at::Tensor>& reference, bool grads,
                         const std::string& what, double tolerance = 1e-5) {
  double largest = 0;
  for (const auto& [name, value] : reference) largest = std::max(largest, value.abs().max().item<double>());
  for (const ParamShard& shard : sharded_parameters(*parallel, parallel->tp_group())) {
    at::Tensor expected = reference.at(shard.name);
    if (shard.split_dim >= 0) expected = expected.narrow(shard.split_dim, shard.offset, shard.length);
    const at::Tensor whole = grads ? shard.param.grad() : shard.param.detach();
    const at::Tensor actual = shard.split_dim >= 0 ? whole.narrow(shard.split_dim, 0, shard.length) : whole;
    ASSERT_EQ(actual.sizes(), expected.sizes()) << shard.name;
    EXPECT_LT(relative_difference(actual, expected, 1e-3 * largest), tolerance) << what << " " << shard.name;
    if (shard.split_dim >= 0 && shard.length < whole.size(shard.split_dim)) {  // a padded vocabulary's tail
      const at::Tensor padding = whole.narrow(shard.split_dim, shard.length, whole.size(shard.split_dim) - shard.length);
      EXPECT_EQ(padding.abs().max().item<double>(), 0.0) << what << " " << shard.name << ": padding rows are not zero";
    }
  }
}

// Every dp x tp layout of the world against one rank holding the whole model: initial
// weights, logits, gradients and one optimizer step. The step is SGD, linear in the
// gradient, so that it passes the gradients' agreement on unchanged (AdamW's first step,
// lr * g / (|g| + eps), would turn rounding in gradient elements near 0 into lr-sized noise).
void expect_every_layout_matches(const ModelConfig& config) {
  const comm::World& world = testing::world();
  const GlobalBatch batch(config.vocab_size);
  const comm::ProcessGroup solo = testing::solo_group();
  for (const int tp : divisors(world.size())) {
    SCOPED_TRACE("tp=" + std::to_string(tp));
    const comm::ParallelDims dims = comm::ParallelDims::resolve(0, tp, world.size());
    const comm::ProcessGroups groups = comm::make_process_groups(world, dims, false);
    ASSERT_EQ(kGlobalBatch % dims.dp(), 0);
    const int64_t local = kGlobalBatch / dims.dp();
    const int64_t begin = groups.dp.rank() * local;

    Lalm reference(config, solo);
    const Outputs ref = forward_loss(reference, batch, 0, kGlobalBatch);
    ref.loss.backward();

    Lalm parallel(config, groups.tp);
    expect_shards_match(parallel, by_name(reference, false), false, "initial");
    GradientSynchronizer sync(parallel->parameters(), groups.dp, /*bucket_mb=*/0.004);  // several buckets
    const Outputs out = forward_loss(parallel, batch, begin, local);
    out.loss.backward();
    sync.finish();
    if (dims.dp() > 1) {
      EXPECT_GT(sync.num_buckets(), 2U);
      EXPECT_GT(sync.launched_during_backward(), 0) << "no bucket started during backward";
    }

    // Logits of this rank's sequences on their real positions.
    for (int64_t b = 0; b < local; ++b) {
      const int64_t length = 3 + static_cast<int64_t>(batch.questions[static_cast<size_t>(begin + b)].size()) + 5;
      EXPECT_LT(relative_difference(out.text_logits[b].narrow(0, 0, length),
                                    ref.text_logits[begin + b].narrow(0, 0, length)),
                1e-5);
    }
    expect_shards_match(parallel, by_name(reference, true), true, "gradient of");

    torch::optim::SGD ref_opt(reference->parameters(), torch::optim::SGDOptions(0.1));
    torch::optim::SGD par_opt(parallel->parameters(), torch::optim::SGDOptions(0.1));
    ref_opt.step();
    par_opt.step();
    expect_shards_match(parallel, by_name(reference, false), false, "updated");
  }
}

TEST(ParallelModel, EveryLayoutMatchesTheSingleRankModel) { expect_every_layout_matches(tiny_model_config()); }

// One key/value head (replicated on every tp rank, its gradient summed over them) and
// Qwen2's q/k/v biases.
TEST(ParallelModel, ReplicatedKeyValueHeadsAndBiasesMatchTheSingleRankModel) {
  ModelConfig config = tiny_model_config();
  config.n_kv_heads = 1;
  config.attention_bias = true;
  expect_every_layout_matches(config);
}

// A vocabulary of 61 that tp 2 and 4 do not divide: padded to 62 / 64 rows, the padding
// zero before and after an update and never in the loss; untied and tied heads.
TEST(ParallelModel, PaddedVocabularyMatchesTheSingleRankModel) {
  ModelConfig config = tiny_model_config();
  config.vocab_size = 61;
  for (const bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    config.tie_embeddings = tied;
    expect_every_layout_matches(config);
  }
}

// Gradient accumulation: two micro-batches per dp rank, synchronised only on the second,
// give the full-batch gradient; zero_grad keeps .grad viewing the buckets.
TEST(ParallelModel, GradientAccumulationSynchronisesOnceAndMatches) {
  const comm::World& world = testing::world();
  const GlobalBatch batch;
  const comm::ProcessGroup solo = testing::solo_group();
  const comm::ProcessGroups groups = comm::make_process_groups(world, comm::ParallelDims::resolve(0, 1, world.size()), false);
  const int64_t per_rank = kGlobalBatch / world.size();
  if (per_rank < 2) GTEST_SKIP() << "needs two sequences per rank for two micro-batches";

  Lalm reference(tiny_model_config(), solo);
  forward_loss(reference, batch, 0, kGlobalBatch).loss.backward();

  Lalm model(tiny_model_config(), groups.tp);
  GradientSynchronizer sync(model->parameters(), groups.dp, /*bucket_mb=*/0.004);
  for (int repeat = 0; repeat < 2; ++repeat) {  // the second pass checks zero_grad
    sync.zero_grad();
    const int64_t begin = groups.dp.rank() * per_rank;
    for (int64_t micro = 0; micro < per_rank; ++micro) {
      sync.set_sync_enabled(micro + 1 == per_rank);
      // Each micro-batch's mean loss weighted by its share of the rank's batch.
      (forward_loss(model, batch, begin + micro, 1).loss / static_cast<double>(per_rank)).backward();
    }
    sync.finish();
    expect_shards_match(model, by_name(reference, true), true, "accumulated gradient of");
  }
}

// The four region ops over the whole world as one tp group, forward and backward.
TEST(RegionOps, ForwardAndBackwardMoveTheRightSlices) {
  const comm::World& world = testing::world();
  const comm::ProcessGroup group = comm::ProcessGroup::world(world);
  const int64_t p = group.size();
  const int64_t r = group.rank();
  // Each rank's slice [2, 3] holds 100 * rank + its index.
  const at::Tensor slice = (torch::arange(6, torch::kFloat).view({2, 3}) + 100.0 * static_cast<double>(r)).requires_grad_();
  const at::Tensor full = tp::gather_from(slice, group);
  ASSERT_EQ(full.sizes(), (std::vector<int64_t>{2, 3 * p}));
  for (int64_t q = 0; q < p; ++q) {
    EXPECT_TRUE(torch::equal(full.detach().narrow(1, 3 * q, 3), torch::arange(6, torch::kFloat).view({2, 3}) + 100.0 * static_cast<double>(q)));
  }
  // d/d(slice) of sum(full * w) is this rank's slice of w.
  const at::Tensor weights = torch::arange(6 * p, torch::kFloat).view({2, 3 * p});
  (full * weights).sum().backward();
  EXPECT_TRUE(torch::equal(slice.grad(), weights.narrow(1, 3 * r, 3)));

  const at::Tensor whole = torch::arange(4 * p, torch::kFloat).view({1, 4 * p}).requires_grad_();
  const at::Tensor mine = tp::scatter_to(whole, group);
  EXPECT_TRUE(torch::equal(mine.detach(), whole.detach().narrow(1, 4 * r, 4)));
  mine.sum().backward();  // every rank's slice gradient is 1: gathered, all of whole gets 1
  EXPECT_TRUE(torch::equal(whole.grad(), torch::ones({1, 4 * p})));

  const at::Tensor x = torch::full({3}, static_cast<float>(r + 1)).requires_grad_();
  const at::Tensor reduced = tp::reduce_from(x, group);
  EXPECT_EQ(reduced[0].item<float>(), static_cast<float>(p * (p + 1) / 2));
  reduced.sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), torch::ones({3})));  // identity backward

  const at::Tensor y = torch::full({3}, 1.0F).requires_grad_();
  (tp::copy_to(y, group) * static_cast<float>(r + 1)).sum().backward();
  EXPECT_TRUE(torch::equal(y.grad(), torch::full({3}, static_cast<float>(p * (p + 1) / 2))));  // summed backward
}

TEST(ParallelModel, GreedyGenerationUnderTensorParallelismMatches) {
  const comm::World& world = testing::world();
  const comm::ProcessGroup solo = testing::solo_group();
  const comm::ProcessGroups groups =
      comm::make_process_groups(world, comm::ParallelDims::resolve(0, world.size(), world.size()), false);
  Lalm reference(tiny_model_config(), solo);
  Lalm parallel(tiny_model_config(), groups.tp);
  const TokenRows questions = token_rows({4, 9, 6}, 64, 31);
  SamplingOptions options;
  options.max_new_tokens = 10;
  options.temperature = 0;
  auto run = [&](Lalm& model) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
    const DecoderBatch prompts = assemble_text(model, questions, TokenRows(3), tiny_tokens(), Padding::kLeft);
    return generate(model, prompts, tiny_tokens(), options, gen).tokens;
  };
  EXPECT_EQ(run(parallel), run(reference));
}

}  // namespace
}  // namespace cord::model
