// The model on a GPU against the same model on the CPU (one rank; skipped, and reported
// as skipped, without a usable GPU). Tolerances:
//   fp32: loss and logits within 1e-4 relative, every gradient within 1e-3 of its largest
//         element (different kernels sum in different orders; TF32 is switched off)
//   bf16 autocast: loss within 3e-2 relative of fp32, each gradient's cosine similarity
//         to the fp32 gradient above 0.99; parameters and gradients stay float32
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "cord/core/cuda_device.hpp"
#include "cord/model/batch.hpp"
#include "cord/model/generate.hpp"
#include "cord/model/precision.hpp"
#include "model_fixtures.hpp"
#include "mpi_test_world.hpp"

namespace cord::model {
namespace {

using cord::testing::solo_group;
using cord::testing::tiny_model_config;
using cord::testing::tiny_tokens;

class ModelGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    const CudaProbe probe = probe_cuda();
    if (!probe.usable()) GTEST_SKIP() << "no usable GPU: " << probe.unavailable_reason;
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  }
};

struct StepResult {
  at::Tensor loss;
  at::Tensor logits;
  std::vector<at::Tensor> grads;  // CPU, float32, in parameter order
  std::vector<at::ScalarType> param_dtypes;
};

// One forward/backward of a text batch and an audio batch on `device`.
StepResult step(const torch::Device& device, Precision precision) {
  torch::manual_seed(3);
  const ModelConfig config = tiny_model_config();
  Lalm model(config, solo_group());
  model->to(device);
  const SpecialTokens tokens = tiny_tokens();
  const TokenRows questions = cord::testing::token_rows({5, 9, 7}, config.vocab_size, 1);
  const TokenRows responses = cord::testing::token_rows({6, 3, 8}, config.vocab_size, 2);
  const at::Tensor mel = torch::randn({3, 40, config.audio.n_mels}, torch::TensorOptions().dtype(torch::kFloat));
  const at::Tensor mel_lengths = torch::tensor({40, 33, 24}, torch::kLong);
  StepResult result;
  at::Tensor loss;
  {
    const AutocastScope autocast(precision, device);
    const DecoderBatch text = assemble_text(model, questions, responses, tokens, Padding::kRight);
    const DecoderBatch audio =
        assemble_audio(model, mel.to(device), mel_lengths.to(device), responses, tokens, Padding::kRight);
    const at::Tensor text_logits = model->decoder->forward(text.embeds, text.positions, text.mask);
    const at::Tensor audio_logits = model->decoder->forward(audio.embeds, audio.positions, audio.mask);
    const TokenLoss a = response_cross_entropy(text_logits, text.targets, solo_group());
    const TokenLoss b = response_cross_entropy(audio_logits, audio.targets, solo_group());
    loss = (a.sum + b.sum) / static_cast<double>(a.tokens + b.tokens);
    result.logits = text_logits.detach().to(torch::kCPU, torch::kFloat);
  }
  loss.backward();
  result.loss = loss.detach().cpu();
  for (const auto& p : model->parameters()) {
    result.grads.push_back(p.grad().cpu());
    result.param_dtypes.push_back(p.scalar_type());
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat);
  }
  return result;
}

TEST_F(ModelGpu, Fp32ForwardBackwardMatchesTheCpu) {
  const StepResult cpu = step(torch::kCPU, Precision::kFp32);
  const StepResult gpu = step(torch::Device(torch::kCUDA, 0), Precision::kFp32);
  EXPECT_NEAR(gpu.loss.item<double>(), cpu.loss.item<double>(), 1e-4 * std::abs(cpu.loss.item<double>()));
  EXPECT_LE((gpu.logits - cpu.logits).abs().max().item<double>(), 1e-4 * cpu.logits.abs().max().item<double>());
  ASSERT_EQ(cpu.grads.size(), gpu.grads.size());
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    const double scale = cpu.grads[i].abs().max().item<double>();
    EXPECT_LE((gpu.grads[i] - cpu.grads[i]).abs().max().item<double>(), 1e-3 * scale + 1e-7) << "parameter " << i;
  }
}

TEST_F(ModelGpu, Bf16AutocastStaysCloseToFp32WithFloat32MasterWeights) {
  const torch::Device gpu(torch::kCUDA, 0);
  const StepResult fp32 = step(gpu, Precision::kFp32);
  const StepResult bf16 = step(gpu, Precision::kBf16);
  EXPECT_NEAR(bf16.loss.item<double>(), fp32.loss.item<double>(), 3e-2 * std::abs(fp32.loss.item<double>()));
  for (size_t i = 0; i < fp32.grads.size(); ++i) {
    EXPECT_EQ(bf16.param_dtypes[i], torch::kFloat) << "parameter " << i;
    const at::Tensor a = fp32.grads[i].flatten().to(torch::kDouble), b = bf16.grads[i].flatten().to(torch::kDouble);
    if (a.norm().item<double>() == 0) continue;
    const double cosine = (a.dot(b) / (a.norm() * b.norm())).item<double>();
    EXPECT_GT(cosine, 0.99) << "parameter " << i;
  }
}

TEST_F(ModelGpu, KvCachedDecodingMatchesFullRecomputeOnTheGpu) {
  const torch::Device gpu(torch::kCUDA, 0);
  const ModelConfig config = tiny_model_config();
  Lalm model(config, solo_group());
  model->to(gpu);
  const SpecialTokens tokens = tiny_tokens();
  const TokenRows questions = cord::testing::token_rows({4, 11, 7, 2}, config.vocab_size, 5);
  const DecoderBatch prompts = assemble_text(model, questions, TokenRows(questions.size()), tokens, Padding::kLeft);
  SamplingOptions options;
  options.max_new_tokens = 24;
  options.temperature = 0;
  at::Generator generator = at::detail::createCPUGenerator(1);
  const Generation cached = generate(model, prompts, tokens, options, generator);
  options.use_kv_cache = false;
  const Generation recomputed = generate(model, prompts, tokens, options, generator);
  EXPECT_EQ(cached.tokens, recomputed.tokens);
}

}  // namespace
}  // namespace cord::model
