// Single-rank model tests: KV cache vs full recompute, seeded sampling, batch
// invariance, parameter counts, finite-difference gradients.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cstdlib>

#include "cord/model/generate.hpp"
#include "cord/model/model_stats.hpp"
#include "hdf5_fixture.hpp"
#include "model_fixtures.hpp"
#include "mpi_test_world.hpp"

namespace cord::model {
namespace {

using testing::mel_batch;
using testing::solo_group;
using testing::tiny_model_config;
using testing::tiny_tokens;
using testing::token_rows;


double max_relative_difference(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(b.abs().max().item<double>(), 1e-12);
  return (a - b).abs().max().item<double>() / scale;
}

class ModelTest : public ::testing::Test {
 protected:
  ModelTest() : group_(solo_group()), model_(tiny_model_config(), group_) {}
  comm::ProcessGroup group_;
  Lalm model_;
};

TEST_F(ModelTest, KvCacheLogitsEqualFullRecomputeAtEveryStep) {
  const TokenRows questions = token_rows({3, 7, 5}, 64, 1);
  const TokenRows empty(3);
  for (const bool audio : {false, true}) {
    SCOPED_TRACE(audio ? "audio prompts" : "text prompts");
    torch::NoGradGuard no_grad;
    const auto [mel, lengths] = mel_batch({24, 40, 33}, 8, 3);
    const DecoderBatch prompts =
        audio ? assemble_audio(model_, mel, lengths, empty, tiny_tokens(), Padding::kLeft)
              : assemble_text(model_, questions, empty, tiny_tokens(), Padding::kLeft);
    std::vector<at::Tensor> cached;
    std::vector<at::Tensor> recomputed;
    SamplingOptions options;
    options.max_new_tokens = 12;
    options.temperature = 0;  // greedy: both paths see the same tokens
    at::Generator gen1 = at::make_generator<at::CPUGeneratorImpl>(1);
    at::Generator gen2 = at::make_generator<at::CPUGeneratorImpl>(1);
    const Generation with_cache = generate(model_, prompts, tiny_tokens(), options, gen1,
                                           [&](int64_t, const at::Tensor& l) { cached.push_back(l.clone()); });
    options.use_kv_cache = false;
    const Generation without = generate(model_, prompts, tiny_tokens(), options, gen2,
                                        [&](int64_t, const at::Tensor& l) { recomputed.push_back(l.clone()); });
    EXPECT_EQ(with_cache.tokens, without.tokens);
    ASSERT_EQ(cached.size(), recomputed.size());
    EXPECT_GT(cached.size(), 3U) << "too few decode steps to compare";
    for (size_t step = 0; step < cached.size(); ++step) {
      EXPECT_LT(max_relative_difference(cached[step], recomputed[step]), 1e-5) << "step " << step;
    }
  }
}

TEST_F(ModelTest, LeftPaddedPromptGivesTheSameLogitsAsTheSequenceAlone) {
  torch::NoGradGuard no_grad;
  const TokenRows questions = token_rows({3, 9}, 64, 2);
  const DecoderBatch both = assemble_text(model_, questions, TokenRows(2), tiny_tokens(), Padding::kLeft);
  const DecoderBatch alone = assemble_text(model_, {questions[0]}, TokenRows(1), tiny_tokens(), Padding::kLeft);
  const at::Tensor logits_both = model_->decoder->forward(both.embeds, both.positions, both.mask).select(1, -1);
  const at::Tensor logits_alone = model_->decoder->forward(alone.embeds, alone.positions, alone.mask).select(1, -1);
  EXPECT_LT(max_relative_difference(logits_both[0], logits_alone[0]), 1e-5);
}

TEST_F(ModelTest, AudioEncodingDoesNotDependOnBatchPadding) {
  torch::NoGradGuard no_grad;
  const auto [mel, lengths] = mel_batch({21, 64}, 8, 5);
  const auto [frames, frame_lengths] = model_->encode_audio(mel, lengths);
  const auto [alone, alone_lengths] = model_->encode_audio(mel.narrow(0, 0, 1).narrow(1, 0, 21), lengths.narrow(0, 0, 1));
  const int64_t n = alone_lengths[0].item<int64_t>();
  ASSERT_EQ(frame_lengths[0].item<int64_t>(), n);
  EXPECT_LT(max_relative_difference(frames[0].narrow(0, 0, n), alone[0].narrow(0, 0, n)), 1e-5);
}

TEST_F(ModelTest, SamplingIsReproducibleFromTheSeed) {
  const TokenRows questions = token_rows({4, 6, 5, 8}, 64, 3);
  const DecoderBatch prompts = assemble_text(model_, questions, TokenRows(4), tiny_tokens(), Padding::kLeft);
  SamplingOptions options;
  options.max_new_tokens = 20;
  options.temperature = 1.5;
  options.top_p = 0.9;
  auto run = [&](uint64_t seed) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    return generate(model_, prompts, tiny_tokens(), options, gen).tokens;
  };
  const TokenRows first = run(11);
  EXPECT_EQ(first, run(11));
  EXPECT_NE(first, run(12));
  for (const auto& row : first) {
    EXPECT_FALSE(row.empty());
    EXPECT_LE(row.size(), 20U);
    for (size_t i = 0; i + 1 < row.size(); ++i) EXPECT_NE(row[i], tiny_tokens().eos) << "tokens after eos";
  }
}

TEST(SampleTokens, TopPKeepsOnlyTheNucleus) {
  // p = [0.5, 0.3, 0.15, 0.05]: top_p 0.7 keeps tokens 0 and 1 only.
  const at::Tensor logits = torch::log(torch::tensor({{0.5, 0.3, 0.15, 0.05}}, torch::kFloat)).repeat({2000, 1});
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor tokens = sample_tokens(logits, 1.0, 0.7, gen);
  EXPECT_EQ((tokens >= 2).sum().item<int64_t>(), 0);
  EXPECT_GT((tokens == 1).sum().item<int64_t>(), 0);
  EXPECT_TRUE(torch::equal(sample_tokens(logits, 0.0, 1.0, gen), torch::zeros({2000}, torch::kLong)));
}

TEST_F(ModelTest, ParameterCountMatchesTheStatsFromConfig) {
  for (const bool tied : {false, true}) {
    ModelConfig config = tiny_model_config();
    config.tie_embeddings = tied;
    Lalm model(config, group_);
    int64_t encoder = 0, projector = 0, decoder = 0;
    for (const auto& p : model->named_parameters()) {
      const std::string& name = p.key();
      (name.rfind("encoder.", 0) == 0 ? encoder : name.rfind("projector.", 0) == 0 ? projector : decoder) +=
          p.value().numel();
    }
    const ModelStats stats = compute_model_stats(config, 64, 100);
    EXPECT_EQ(stats.encoder_params, encoder);
    EXPECT_EQ(stats.projector_params, projector);
    EXPECT_EQ(stats.decoder_params, decoder);
    EXPECT_GT(stats.decoder_train_flops_per_token, 6.0 * static_cast<double>(decoder - config.vocab_size * config.d_model) * 0.9);
  }
}

TEST_F(ModelTest, InitialisationDependsOnlyOnTheSeed) {
  Lalm same(tiny_model_config(), group_);
  ModelConfig other_config = tiny_model_config();
  other_config.init_seed = 8;
  Lalm other(other_config, group_);
  const auto a = model_->named_parameters();
  const auto b = same->named_parameters();
  const auto c = other->named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].value(), b[i].value())) << a[i].key();
    if (a[i].key().find("norm") == std::string::npos && a[i].key().find("bias") == std::string::npos) {
      EXPECT_FALSE(torch::equal(a[i].value(), c[i].value())) << a[i].key();
    }
  }
}

// The loss of a text batch and an audio batch together, normalised per response token.
at::Tensor tiny_loss(Lalm& model) {
  const TokenRows questions = token_rows({4, 6}, 64, 4);
  const TokenRows responses = token_rows({5, 3}, 64, 5);
  const auto [mel, lengths] = mel_batch({20, 28}, 8, 6);
  const DecoderBatch text = assemble_text(model, questions, responses, tiny_tokens(), Padding::kRight);
  const DecoderBatch audio = assemble_audio(model, mel.to(model->decoder->norm->weight.scalar_type()), lengths,
                                            responses, tiny_tokens(), Padding::kRight);
  const TokenLoss t = response_cross_entropy(model->decoder->forward(text.embeds, text.positions, text.mask),
                                             text.targets, model->tp_group());
  const TokenLoss a = response_cross_entropy(model->decoder->forward(audio.embeds, audio.positions, audio.mask),
                                             audio.targets, model->tp_group());
  return (t.sum + a.sum) / static_cast<double>(t.tokens + a.tokens);
}

TEST_F(ModelTest, GradientsMatchFiniteDifferencesInFloat64) {
  ModelConfig config = tiny_model_config();
  config.n_layers = 1;
  Lalm model(config, group_);
  model->to(torch::kDouble);
  model->zero_grad();
  tiny_loss(model).backward();
  constexpr double kStep = 1e-6;
  int checked = 0;
  for (const auto& item : model->named_parameters()) {
    at::Tensor param = item.value();
    const at::Tensor flat = param.detach().view(-1);
    const at::Tensor grad = param.grad().view(-1);
    for (const int64_t index : {int64_t{0}, flat.numel() / 2, flat.numel() - 1}) {
      const double original = flat[index].item<double>();
      double plus = 0, minus = 0;
      {
        torch::NoGradGuard no_grad;
        flat[index] = original + kStep;
        plus = tiny_loss(model).item<double>();
        flat[index] = original - kStep;
        minus = tiny_loss(model).item<double>();
        flat[index] = original;
      }
      const double numeric = (plus - minus) / (2 * kStep);
      const double analytic = grad[index].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-4 * std::abs(numeric)) << item.key() << "[" << index << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 60);
}

// The PyTorch reference (tests/model/make_reference.py): same weights and inputs must
// give the same logits, loss and gradients.
TEST(ReferenceOracle, MatchesThePyTorchModel) {
  const char* path = std::getenv("CORD_MODEL_REFERENCE");
  ASSERT_NE(path, nullptr) << "CORD_MODEL_REFERENCE must name tests/model/reference_tiny.h5";
  const testing::Hdf5Fixture fixture(path);
  const comm::ProcessGroup group = solo_group();
  Lalm model(tiny_model_config(), group);
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : model->named_parameters()) p.value().copy_(fixture.read("params/" + p.key(), at::kFloat));
  }
  auto rows = [&](const std::string& name) {
    const at::Tensor padded = fixture.read(name, at::kLong);
    TokenRows out;
    for (int64_t b = 0; b < padded.size(0); ++b) {
      std::vector<int64_t> row;
      for (int64_t t = 0; t < padded.size(1) && padded[b][t].item<int64_t>() >= 0; ++t) row.push_back(padded[b][t].item<int64_t>());
      out.push_back(row);
    }
    return out;
  };
  const TokenRows questions = rows("inputs/questions");
  const TokenRows responses = rows("inputs/responses");
  const DecoderBatch text = assemble_text(model, questions, responses, tiny_tokens(), Padding::kRight);
  const DecoderBatch audio = assemble_audio(model, fixture.read("inputs/mel", at::kFloat),
                                            fixture.read("inputs/mel_lengths", at::kLong), responses, tiny_tokens(),
                                            Padding::kRight);
  const at::Tensor text_logits = model->decoder->forward(text.embeds, text.positions, text.mask);
  const at::Tensor audio_logits = model->decoder->forward(audio.embeds, audio.positions, audio.mask);
  EXPECT_LT(max_relative_difference(text_logits, fixture.read("outputs/text_logits", at::kFloat)), 1e-5);
  EXPECT_LT(max_relative_difference(audio_logits, fixture.read("outputs/audio_logits", at::kFloat)), 1e-5);
  const TokenLoss t = response_cross_entropy(text_logits, text.targets, group);
  const TokenLoss a = response_cross_entropy(audio_logits, audio.targets, group);
  const at::Tensor loss = (t.sum + a.sum) / static_cast<double>(t.tokens + a.tokens);
  EXPECT_NEAR(loss.item<float>(), fixture.read("outputs/loss", at::kFloat).item<float>(), 1e-5);
  loss.backward();
  int compared = 0;
  for (const auto& p : model->named_parameters()) {
    EXPECT_LT(max_relative_difference(p.value().grad(), fixture.read("grads/" + p.key(), at::kFloat)), 1e-5) << p.key();
    ++compared;
  }
  EXPECT_EQ(compared, 39);
}

}  // namespace
}  // namespace cord::model
