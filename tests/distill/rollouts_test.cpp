// The pieces of the distill stage below the step loop: per-row sampling temperatures,
// mixed audio/text batches (one decode for every rollout of a method), the gather of the
// logits that predict each response token, and which rollouts each method asks for.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "cord/core/error.hpp"
#include "cord/config/load.hpp"
#include "cord/distill/rollouts.hpp"
#include "cord/eval/prompts.hpp"
#include "cord/model/generate.hpp"
#include "model_fixtures.hpp"
#include "mpi_test_world.hpp"

namespace cord::distill {
namespace {

using cord::testing::mel_batch;
using cord::testing::solo_group;
using cord::testing::tiny_model_config;
using cord::testing::tiny_tokens;
using cord::testing::token_rows;

TEST(Sampling, PerRowTemperaturesMatchOneTemperatureAndGreedyRowsTakeTheArgmax) {
  at::Generator data = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor logits = at::normal(0.0, 2.0, {6, 50}, data);
  at::Generator a = at::make_generator<at::CPUGeneratorImpl>(11);
  at::Generator b = at::make_generator<at::CPUGeneratorImpl>(11);
  const at::Tensor shared = model::sample_tokens(logits, 1.3, 1.0, a);
  const at::Tensor per_row = model::sample_tokens(logits, std::vector<double>(6, 1.3), 1.0, b);
  EXPECT_TRUE(torch::equal(shared, per_row));

  at::Generator c = at::make_generator<at::CPUGeneratorImpl>(11);
  const at::Tensor mixed = model::sample_tokens(logits, {0.0, 1.3, 0.0, 1.3, 1.3, 1.3}, 1.0, c);
  const at::Tensor argmax = logits.argmax(-1);
  EXPECT_EQ(mixed[0].item<int64_t>(), argmax[0].item<int64_t>());
  EXPECT_EQ(mixed[2].item<int64_t>(), argmax[2].item<int64_t>());
  for (const int64_t row : {1, 3, 4, 5}) EXPECT_EQ(mixed[row].item<int64_t>(), per_row[row].item<int64_t>());
  EXPECT_THROW(model::sample_tokens(logits, std::vector<double>(5, 1.0), 1.0, c), Error);
}

class MixedBatch : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    lalm = model::Lalm(tiny_model_config(), solo_group());
    lalm->eval();
    std::tie(mel, mel_lengths) = mel_batch({40, 24}, tiny_model_config().audio.n_mels, 5);
    questions = token_rows({5, 9}, tiny_model_config().vocab_size, 1);
    responses = token_rows({4, 7, 3, 6}, tiny_model_config().vocab_size, 2);
  }
  model::Lalm lalm{nullptr};
  at::Tensor mel, mel_lengths;
  model::TokenRows questions, responses;
};

// Each row of a mixed batch gives the logits of the same sequence assembled on its own.
TEST_F(MixedBatch, AudioAndTextRowsEqualTheirSeparateAssemblies) {
  torch::NoGradGuard no_grad;
  const model::SpecialTokens tokens = tiny_tokens();
  const auto [frames, frame_lengths] = lalm->encode_audio(mel, mel_lengths);
  // rows: audio clip 1, text question 0, audio clip 0, audio clip 1 again
  std::vector<model::SequenceSpec> specs(4);
  specs[0].audio_row = 1;
  specs[1].question = questions[0];
  specs[2].audio_row = 0;
  specs[3].audio_row = 1;
  for (size_t r = 0; r < 4; ++r) specs[r].response = responses[r];
  for (const model::Padding padding : {model::Padding::kRight, model::Padding::kLeft}) {
    const model::DecoderBatch mixed = model::assemble_sequences(lalm, frames, frame_lengths, specs, tokens, padding);
    const at::Tensor mixed_logits = lalm->decoder->forward(mixed.embeds, mixed.positions, mixed.mask);
    for (int64_t r = 0; r < 4; ++r) {
      const auto& spec = specs[static_cast<size_t>(r)];
      const model::TokenRows response{spec.response};
      const model::DecoderBatch alone =
          spec.audio_row >= 0
              ? model::assemble_audio(lalm, mel.narrow(0, spec.audio_row, 1).narrow(1, 0, mel_lengths[spec.audio_row].item<int64_t>()),
                                      mel_lengths.narrow(0, spec.audio_row, 1), response, tokens, padding)
              : model::assemble_text(lalm, {spec.question}, response, tokens, padding);
      const at::Tensor alone_logits = lalm->decoder->forward(alone.embeds, alone.positions, alone.mask);
      const int64_t length = alone.lengths[0];
      ASSERT_EQ(mixed.lengths[static_cast<size_t>(r)], length);
      ASSERT_EQ(mixed.prompt_lengths[static_cast<size_t>(r)], alone.prompt_lengths[0]);
      const int64_t width = mixed.embeds.size(1);
      const int64_t start = padding == model::Padding::kLeft ? width - length : 0;
      const int64_t alone_start = padding == model::Padding::kLeft ? alone.embeds.size(1) - length : 0;
      EXPECT_TRUE(torch::allclose(mixed_logits[r].narrow(0, start, length),
                                  alone_logits[0].narrow(0, alone_start, length), 1e-4, 1e-5))
          << "row " << r;
    }
  }
}

TEST_F(MixedBatch, ResponseLogitsAreThePositionsThatPredictEachResponseToken) {
  torch::NoGradGuard no_grad;
  const model::SpecialTokens tokens = tiny_tokens();
  std::vector<model::SequenceSpec> specs(2);
  specs[0].question = questions[0];
  specs[0].response = responses[0];
  specs[1].question = questions[1];
  specs[1].response = responses[1];
  const model::DecoderBatch inputs =
      model::assemble_sequences(lalm, at::Tensor(), at::Tensor(), specs, tokens, model::Padding::kRight);
  const at::Tensor logits = lalm->decoder->forward(inputs.embeds, inputs.positions, inputs.mask);
  const ResponseLogits out = response_logits(logits, inputs, {responses[0], responses[1]});
  ASSERT_EQ(out.logits.size(1), 7);  // the longest response
  for (int64_t r = 0; r < 2; ++r) {
    const auto& response = responses[static_cast<size_t>(r)];
    for (int64_t t = 0; t < 7; ++t) {
      const bool real = t < static_cast<int64_t>(response.size());
      EXPECT_EQ(out.mask[r][t].item<bool>(), real);
      if (!real) continue;
      EXPECT_EQ(out.targets[r][t].item<int64_t>(), response[static_cast<size_t>(t)]);
      // The training targets of the assembled batch agree on which position predicts which token.
      const int64_t position = inputs.prompt_lengths[static_cast<size_t>(r)] - 1 + t;
      EXPECT_EQ(inputs.targets[r][position].item<int64_t>(), response[static_cast<size_t>(t)]);
      EXPECT_TRUE(torch::equal(out.logits[r][t], logits[r][position]));
    }
  }
}

// CORD's token loss through a whole tiny model, in float64: the student reads audio, the
// teacher (the same weights, cord.teacher = current) reads text, both on the same
// rollouts. The autograd gradient must equal finite differences that move the student's
// weights only: no gradient reaches the teacher pass.
TEST_F(MixedBatch, TokenLossGradientMatchesFiniteDifferencesWithTheTeacherHeldFixed) {
  model::Lalm teacher_copy(tiny_model_config(), solo_group());
  lalm->to(torch::kDouble);
  teacher_copy->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    const auto source = lalm->parameters();
    const auto target = teacher_copy->parameters();
    for (size_t i = 0; i < source.size(); ++i) target[i].copy_(source[i]);
  }
  const at::Tensor mel64 = mel.to(torch::kDouble);
  const model::TokenRows rollouts{responses[0], responses[1]};
  // student: the model under test; teacher: the same model, or a fixed copy for the differences
  auto loss = [&](model::Lalm& teacher) {
    const auto [frames, frame_lengths] = lalm->encode_audio(mel64, mel_lengths);
    std::vector<model::SequenceSpec> specs(2);
    for (size_t r = 0; r < 2; ++r) {
      specs[r].audio_row = static_cast<int64_t>(r);
      specs[r].response = rollouts[r];
    }
    const model::DecoderBatch inputs =
        model::assemble_sequences(lalm, frames, frame_lengths, specs, tiny_tokens(), model::Padding::kRight);
    const ResponseLogits student =
        response_logits(lalm->decoder->forward(inputs.embeds, inputs.positions, inputs.mask), inputs, rollouts);
    const at::Tensor teacher_logits = teacher_response_logits(teacher, questions, rollouts, student.logits.size(1));
    EXPECT_FALSE(teacher_logits.requires_grad());
    const TokenTerms terms = token_terms(TokenLoss::kReverseKl, student.logits, teacher_logits, student.targets,
                                         student.mask, 2.0, 2.0, 3, solo_group());
    return aggregate(terms.per_position, student.mask, Aggregation::kSum);
  };
  const std::vector<at::Tensor> checked{lalm->encoder->named_parameters()["conv1.weight"],
                                        lalm->projector->named_parameters()["up.weight"],
                                        lalm->decoder->embedding->weight, lalm->decoder->norm->weight};
  const std::vector<at::Tensor> grads = torch::autograd::grad({loss(lalm)}, checked);
  const double eps = 1e-6;
  for (size_t p = 0; p < checked.size(); ++p) {
    for (const int64_t i : {int64_t{0}, checked[p].numel() / 2, checked[p].numel() - 1}) {
      torch::NoGradGuard no_grad;
      const double original = checked[p].view(-1)[i].item<double>();
      checked[p].view(-1)[i] = original + eps;
      const double plus = loss(teacher_copy).item<double>();
      checked[p].view(-1)[i] = original - eps;
      const double minus = loss(teacher_copy).item<double>();
      checked[p].view(-1)[i] = original;
      const double numeric = (plus - minus) / (2 * eps);
      EXPECT_NEAR(grads[p].view(-1)[i].item<double>(), numeric, 1e-5 * std::max(1.0, std::abs(numeric)))
          << "parameter " << p << " element " << i;
    }
  }
}

// A frozen teacher writes the text rollouts (GRPO references, sft's token rollouts); the
// student writes the audio ones. Greedy decoding, so each side equals its own decode.
TEST_F(MixedBatch, TheTeacherWritesTheTextRolloutsAndTheStudentTheAudioOnes) {
  model::Lalm teacher(tiny_model_config(), solo_group());
  teacher->eval();
  {
    torch::NoGradGuard no_grad;  // the initialisation is seeded: move the teacher elsewhere
    at::Generator noise = at::make_generator<at::CPUGeneratorImpl>(7);
    for (at::Tensor& p : teacher->parameters()) p.add_(at::normal(0.0, 0.5, p.sizes(), noise));
  }
  data::Batch batch;
  batch.items = {0, 1};
  batch.features = mel;
  batch.feature_lengths = mel_lengths;
  batch.question = torch::zeros({2, 9}, torch::kLong);
  batch.question_mask = torch::zeros({2, 9}, torch::kBool);
  for (int64_t p = 0; p < 2; ++p) {
    const auto& q = questions[static_cast<size_t>(p)];
    for (size_t t = 0; t < q.size(); ++t) {
      batch.question[p][static_cast<int64_t>(t)] = q[t];
      batch.question_mask[p][static_cast<int64_t>(t)] = true;
    }
  }
  CordConfig cord;
  cord.group_size = 2;
  cord.max_new_tokens = 6;
  cord.token_temperature = cord.group_temperature = cord.reference_temperature = 0.0;

  // What each model writes on its own, greedily: [rows] of audio or text prompts.
  auto greedy = [&](model::Lalm& m, const std::vector<int64_t>& audio_rows, bool text) {
    torch::NoGradGuard no_grad;
    std::vector<model::SequenceSpec> specs;
    if (text) {
      for (const auto& q : questions) specs.push_back({-1, q, {}, model::PromptEnd::kSolve});
    }
    for (const int64_t a : audio_rows) specs.push_back({a, {}, {}, model::PromptEnd::kSolve});
    const auto [frames, frame_lengths] = m->encode_audio(mel, mel_lengths);
    const model::DecoderBatch inputs = model::assemble_sequences(m, frames, frame_lengths, specs,
                                                                 eval::corpus_special_tokens(), model::Padding::kLeft);
    model::SamplingOptions options;
    options.max_new_tokens = 6;
    options.temperatures.assign(specs.size(), 0.0);
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
    return model::generate(m, inputs, eval::corpus_special_tokens(), options, g).tokens;
  };
  const model::TokenRows teacher_text = greedy(teacher, {}, true);
  const model::TokenRows student_text = greedy(lalm, {}, true);
  ASSERT_NE(teacher_text, student_text) << "the two models must differ for this test to mean anything";

  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(5);
  cord.method = Method::kCord;
  const Rollouts with_grpo = generate_rollouts(lalm, teacher, batch, plan_for(cord), cord, generator,
                                               model::Precision::kFp32);
  EXPECT_EQ(with_grpo.max_new_tokens, 6);
  EXPECT_EQ(with_grpo.reference, teacher_text);
  // Audio rows per prompt: [token rollout][2 group rollouts], decoded together.
  const model::TokenRows student_audio = greedy(lalm, {0, 0, 0, 1, 1, 1}, false);
  ASSERT_EQ(with_grpo.token.size(), 2u);
  ASSERT_EQ(with_grpo.group.size(), 4u);
  EXPECT_EQ(with_grpo.token[0], student_audio[0]);
  EXPECT_EQ(with_grpo.group[0], student_audio[1]);
  EXPECT_EQ(with_grpo.group[1], student_audio[2]);
  EXPECT_EQ(with_grpo.token[1], student_audio[3]);
  EXPECT_EQ(with_grpo.group[3], student_audio[5]);

  cord.method = Method::kSft;
  const Rollouts sft = generate_rollouts(lalm, teacher, batch, plan_for(cord), cord, generator,
                                         model::Precision::kFp32);
  EXPECT_EQ(sft.token, teacher_text);
  EXPECT_TRUE(sft.group.empty() && sft.reference.empty());
}

TEST(Methods, EachMethodAsksForItsRolloutsAndLoss) {
  CordConfig cord;
  cord.alpha = 2.0;
  cord.beta = 3.0;
  cord.group_size = 4;
  // The method as a user names it: parsed at load, where a misspelt one fails.
  auto plan = [&](const char* method) {
    cord.method = load_config("", {std::string("cord.method=") + method}).cord.method;
    return plan_for(cord);
  };
  MethodPlan p = plan("cord");
  EXPECT_EQ(p.token_loss, TokenLoss::kReverseKl);
  EXPECT_EQ(p.token_input, eval::Input::kAudio);
  EXPECT_TRUE(p.grpo);
  EXPECT_EQ(p.group_size, 4);
  EXPECT_EQ(p.alpha, 2.0);
  EXPECT_EQ(p.beta, 3.0);
  p = plan("cord-unweighted");
  EXPECT_TRUE(p.grpo);
  EXPECT_EQ(p.alpha, 1.0);
  EXPECT_EQ(p.beta, 1.0);
  p = plan("opd");
  EXPECT_EQ(p.token_loss, TokenLoss::kReverseKl);
  EXPECT_FALSE(p.grpo);
  EXPECT_EQ(p.group_size, 0);
  p = plan("grpo");
  EXPECT_EQ(p.token_loss, TokenLoss::kNone);
  EXPECT_TRUE(p.grpo);
  p = plan("sft");
  EXPECT_EQ(p.token_loss, TokenLoss::kCrossEntropy);
  EXPECT_EQ(p.token_input, eval::Input::kText);
  EXPECT_FALSE(p.grpo);
  p = plan("fkl");
  EXPECT_EQ(p.token_loss, TokenLoss::kForwardKl);
  EXPECT_EQ(p.token_input, eval::Input::kText);
  EXPECT_THROW(plan("ppo"), UsageError);
}

}  // namespace
}  // namespace cord::distill
