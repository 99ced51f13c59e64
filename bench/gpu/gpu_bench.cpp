// GPU benchmarks of the gpu config (jobs/model_gpu.toml: ~105M decoder parameters), one
// rank, one GPU, bf16 autocast with float32 master weights (runtime.precision = bf16).
// Run through bench/gpu/run.sh, which builds, runs the gpu tests, and computes MFU.
//
//   gemm_bf16           the GPU's bf16 matmul rate (8192^3), the denominator of MFU
//   train_step          zero_grad + forward + backward + AdamW of a text batch of
//                       32 x 512 positions (loss on the last 256 of each)
//   decode/kv_cache     200 new tokens for 64 prompts of 64 tokens (temperature 1, top-p 1)
// Every iteration ends with a device synchronisation; times are wall times (manual time).
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"
#include "cord/config/load.hpp"
#include "cord/core/cuda_device.hpp"
#include "cord/model/batch.hpp"
#include "cord/model/generate.hpp"
#include "cord/model/model_stats.hpp"
#include "cord/model/precision.hpp"
#include "cord/train/optimizer.hpp"

namespace {

using namespace cord;
using Clock = std::chrono::steady_clock;
using model::TokenRows;

const comm::World* g_world = nullptr;  // NOLINT: the benchmark process's World
std::string g_job = "jobs/model_gpu.toml";  // NOLINT: set from --job

constexpr int64_t kBatch = 32, kPrompt = 256, kResponse = 256;

ModelConfig gpu_config() { return load_config(g_job, {}).model; }

TokenRows rows(int64_t count, int64_t length, int64_t vocab, int64_t seed) {
  TokenRows out;
  for (int64_t i = 0; i < count; ++i) {
    std::vector<int64_t> row;
    for (int64_t t = 0; t < length; ++t) row.push_back(7 + (seed * 7919 + i * 131 + t * 17) % (vocab - 7));
    out.push_back(row);
  }
  return out;
}

// Times `body` with a device synchronisation after it.
template <typename Body>
void timed(benchmark::State& state, Body&& body) {
  for (auto _ : state) {
    torch::cuda::synchronize();
    const auto start = Clock::now();
    body();
    torch::cuda::synchronize();
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - start).count());
  }
}

void gemm_bf16(benchmark::State& state) {
  const int64_t n = 8192;
  const auto options = torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA);
  const at::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  at::Tensor c = torch::empty({n, n}, options);
  for (int i = 0; i < 3; ++i) at::mm_out(c, a, b);
  timed(state, [&] { at::mm_out(c, a, b); });
  state.counters["flops_per_iteration"] = 2.0 * n * n * n;
}

void train_step(benchmark::State& state) {
  const ModelConfig config = gpu_config();
  const comm::ProcessGroup solo = comm::ProcessGroup::world(*g_world).split(g_world->rank(), 0, "solo");
  model::Lalm model(config, solo);
  const torch::Device device(torch::kCUDA, 0);
  model->to(device);
  std::vector<model::ParamShard> decoder;
  for (model::ParamShard& shard : model::sharded_parameters(*model, solo)) {
    if (shard.name.rfind("decoder.", 0) == 0) decoder.push_back(shard);
  }
  train::AdamW optimizer(decoder, train::AdamWOptions{});
  const TokenRows questions = rows(kBatch, kPrompt - 3, config.vocab_size, 1);
  const TokenRows responses = rows(kBatch, kResponse, config.vocab_size, 2);
  auto step = [&] {
    model->zero_grad();
    at::Tensor loss;
    {
      const model::AutocastScope autocast(model::Precision::kBf16, device);
      const model::DecoderBatch text =
          model::assemble_text(model, questions, responses, model::SpecialTokens{}, model::Padding::kRight);
      const model::TokenLoss sum = model::response_cross_entropy(
          model->decoder->forward(text.embeds, text.positions, text.mask), text.targets, solo);
      loss = sum.sum / static_cast<double>(sum.tokens);
    }
    loss.backward();
    optimizer.step(1e-4);
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up: allocator, cuBLAS heuristics
  timed(state, step);
  const int64_t positions = kBatch * (kPrompt + kResponse);
  state.counters["tokens_per_step"] = static_cast<double>(positions);
  state.counters["train_flops_per_token"] =
      model::compute_model_stats(config, kPrompt + kResponse, 0).decoder_train_flops_per_token;
  state.counters["decoder_params"] = static_cast<double>(model::compute_model_stats(config, 1, 0).decoder_params);
}

void decode_kv_cache(benchmark::State& state) {
  const ModelConfig config = gpu_config();
  const comm::ProcessGroup solo = comm::ProcessGroup::world(*g_world).split(g_world->rank(), 0, "solo");
  model::Lalm model(config, solo);
  const torch::Device device(torch::kCUDA, 0);
  model->to(device);
  model::SpecialTokens tokens;
  tokens.eos = -1;  // never sampled: every sequence decodes all 200 tokens
  torch::NoGradGuard no_grad;
  model::SamplingOptions options;
  options.max_new_tokens = 200;
  options.temperature = 1.0;
  int64_t generated = 0;
  auto run = [&] {
    const model::AutocastScope autocast(model::Precision::kBf16, device);
    const model::DecoderBatch prompts =
        model::assemble_text(model, rows(64, 64, config.vocab_size, 3), TokenRows(64), tokens, model::Padding::kLeft);
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(1);
    const model::Generation out = model::generate(model, prompts, tokens, options, generator);
    generated = 0;
    for (const auto& row : out.tokens) generated += static_cast<int64_t>(row.size());
  };
  run();  // warm-up
  timed(state, run);
  state.counters["new_tokens"] = static_cast<double>(generated);
}

}  // namespace

int main(int argc, char** argv) {
  cord::comm::World world(&argc, &argv);
  g_world = &world;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--job") g_job = argv[i + 1];
  }
  benchmark::Initialize(&argc, argv);
  const cord::CudaProbe probe = cord::probe_cuda();
  if (!probe.usable()) {
    std::fprintf(stderr, "cord_gpu_bench: no usable GPU (%s)\n", probe.unavailable_reason.c_str());
    return 77;
  }
  cord::select_cuda_device(0);
  benchmark::RegisterBenchmark("gemm_bf16", gemm_bf16)->Iterations(20)->Repetitions(3)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("train_step", train_step)->Iterations(10)->Repetitions(3)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("decode/kv_cache", decode_kv_cache)->Iterations(2)->Repetitions(2)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
