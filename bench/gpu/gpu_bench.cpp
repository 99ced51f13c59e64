// GPU benchmarks of the gpu config (jobs/model_gpu.toml: ~105M decoder parameters), one
// rank, one GPU, bf16 autocast with float32 master weights (runtime.precision = bf16).
// Run through bench/gpu/run.sh, which builds, runs the gpu tests, and computes MFU.
//
//   gemm_bf16           the GPU's bf16 matmul rate (8192^3), the denominator of MFU
//   train_step          zero_grad + forward + backward + AdamW of a text batch of
//                       32 x 512 positions (loss on the last 256 of each)
//   train_step_phases   the same step with a device synchronisation after each phase;
//                       counters forward_ms, backward_ms, optimizer_ms (means per step)
//   decode/kv_cache     200 new tokens for 64 prompts of 64 tokens (temperature 1, top-p 1)
// Every iteration ends with a device synchronisation; times are wall times (manual time).
//
// --profile DIR instead runs 3 training steps under the Kineto profiler (after 3 warm-up
// steps) and writes DIR/train_step_trace.json (chrome://tracing, Perfetto) and
// DIR/train_step_kernels.json: per device kernel (or CPU op with --device cpu) its total
// time and launches, largest first, and the device's busy time against the wall time.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_kineto.h>
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
#include "cord/train/stage_support.hpp"

namespace {

using namespace cord;
using train::Clock;
using train::seconds_since;
using train::wait_for_device;
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
    state.SetIterationTime(seconds_since(start));
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

// The gpu config's decoder with AdamW over its parameters and a fixed text batch, on `device`.
struct TrainStep {
  ModelConfig config = gpu_config();
  torch::Device device;
  comm::ProcessGroup solo = comm::ProcessGroup::world(*g_world).split(g_world->rank(), 0, "solo");
  model::Lalm model{config, solo};
  std::unique_ptr<train::AdamW> optimizer;
  TokenRows questions = rows(kBatch, kPrompt - 3, config.vocab_size, 1);
  TokenRows responses = rows(kBatch, kResponse, config.vocab_size, 2);

  explicit TrainStep(torch::Device on) : device(on) {
    model->to(device);
    std::vector<model::ParamShard> decoder;
    for (model::ParamShard& shard : model::sharded_parameters(*model, solo)) {
      if (shard.name.rfind("decoder.", 0) == 0) decoder.push_back(shard);
    }
    optimizer = std::make_unique<train::AdamW>(decoder, train::AdamWOptions{});
  }
  // zero_grad, batch assembly and the forward pass; returns the mean response loss.
  at::Tensor forward() {
    model->zero_grad();
    const model::AutocastScope autocast(model::Precision::kBf16, device);
    const model::DecoderBatch text =
        model::assemble_text(model, questions, responses, model::SpecialTokens{}, model::Padding::kRight);
    const model::TokenLoss sum = model::response_cross_entropy(
        model->decoder->forward(text.embeds, text.positions, text.mask), text.targets, solo);
    return sum.sum / static_cast<double>(sum.tokens);
  }
  void run() {
    forward().backward();
    optimizer->step(1e-4);
  }
  void warm_up() {
    for (int i = 0; i < 3; ++i) run();  // allocator, cuBLAS heuristics
  }
  int64_t positions() const { return kBatch * (kPrompt + kResponse); }
};

void train_step(benchmark::State& state) {
  TrainStep step(torch::Device(torch::kCUDA, 0));
  step.warm_up();
  timed(state, [&] { step.run(); });
  state.counters["tokens_per_step"] = static_cast<double>(step.positions());
  state.counters["train_flops_per_token"] =
      model::compute_model_stats(step.config, kPrompt + kResponse, 0).decoder_train_flops_per_token;
  state.counters["decoder_params"] = static_cast<double>(model::compute_model_stats(step.config, 1, 0).decoder_params);
}

// Where the step's time goes: forward (batch assembly included), backward, AdamW.
void train_step_phases(benchmark::State& state) {
  TrainStep step(torch::Device(torch::kCUDA, 0));
  step.warm_up();
  double forward = 0, backward = 0, update = 0;
  for (auto _ : state) {
    torch::cuda::synchronize();
    const auto start = Clock::now();
    const at::Tensor loss = step.forward();
    torch::cuda::synchronize();
    forward += seconds_since(start);
    const auto backward_start = Clock::now();
    loss.backward();
    torch::cuda::synchronize();
    backward += seconds_since(backward_start);
    const auto update_start = Clock::now();
    step.optimizer->step(1e-4);
    torch::cuda::synchronize();
    update += seconds_since(update_start);
    state.SetIterationTime(seconds_since(start));
  }
  const auto per_step_ms = [&](double seconds) {
    return benchmark::Counter(1e3 * seconds, benchmark::Counter::kAvgIterations);
  };
  state.counters["forward_ms"] = per_step_ms(forward);
  state.counters["backward_ms"] = per_step_ms(backward);
  state.counters["optimizer_ms"] = per_step_ms(update);
}

// --profile DIR: 3 profiled training steps; see the header.
int profile_train_step(const std::string& dir, const torch::Device& device) {
  namespace kineto = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  TrainStep step(device);
  step.warm_up();
  const std::set<ActivityType> activities =
      device.is_cuda() ? std::set<ActivityType>{ActivityType::CPU, ActivityType::CUDA}
                       : std::set<ActivityType>{ActivityType::CPU};
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  kineto::prepareProfiler(config, activities);
  kineto::enableProfiler(config, activities);
  wait_for_device(device);
  const auto start = Clock::now();
  constexpr int kSteps = 3;
  for (int i = 0; i < kSteps; ++i) step.run();
  wait_for_device(device);
  const double wall_ns = 1e9 * seconds_since(start);
  const std::unique_ptr<kineto::ProfilerResult> result = kineto::disableProfiler();
  result->save(dir + "/train_step_trace.json");

  // Device kernels (and copies) by name. On the CPU the events are aten ops, whose times
  // include the ops nested in them, so there the list only ranks them.
  const c10::DeviceType wanted = device.is_cuda() ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  std::map<std::string, std::pair<double, int64_t>> by_name;  // name -> (total ns, count)
  double busy_ns = 0;
  for (const kineto::KinetoEvent& event : result->events()) {
    if (event.deviceType() != wanted) continue;
    auto& [total, count] = by_name[event.name()];
    total += static_cast<double>(event.durationNs());
    ++count;
    if (device.is_cuda()) busy_ns += static_cast<double>(event.durationNs());
  }
  std::vector<std::pair<std::string, std::pair<double, int64_t>>> ranked(by_name.begin(), by_name.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  nlohmann::json kernels = nlohmann::json::array();
  for (const auto& [name, totals] : ranked) {
    kernels.push_back({{"name", name},
                       {"ms_per_step", totals.first / 1e6 / kSteps},
                       {"calls_per_step", static_cast<double>(totals.second) / kSteps},
                       {"share_of_wall", totals.first / wall_ns}});
  }
  const nlohmann::json summary = {{"device", device.str()},
                                  {"steps", kSteps},
                                  {"wall_ms_per_step", wall_ns / 1e6 / kSteps},
                                  {"device_busy_ms_per_step", busy_ns / 1e6 / kSteps},
                                  {"kernels", kernels}};
  std::ofstream(dir + "/train_step_kernels.json") << summary.dump(2) << "\n";
  std::printf("profiled %d steps on %s: %.1f ms/step wall, %.1f ms/step device busy; top 15:\n", kSteps,
              device.str().c_str(), wall_ns / 1e6 / kSteps, busy_ns / 1e6 / kSteps);
  for (size_t i = 0; i < ranked.size() && i < 15; ++i) {
    std::printf("  %8.2f ms %6.1f calls  %s\n", ranked[i].second.first / 1e6 / kSteps,
                static_cast<double>(ranked[i].second.second) / kSteps, ranked[i].first.substr(0, 110).c_str());
  }
  return 0;
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
  std::string profile_dir, device = "cuda";
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--job") g_job = argv[i + 1];
    if (std::string(argv[i]) == "--profile") profile_dir = argv[i + 1];
    if (std::string(argv[i]) == "--device") device = argv[i + 1];  // --profile only: cuda | cpu (a smoke check)
  }
  benchmark::Initialize(&argc, argv);
  if (profile_dir.empty() || device != "cpu") {
    const cord::CudaProbe probe = cord::probe_cuda();
    if (!probe.usable()) {
      std::fprintf(stderr, "cord_gpu_bench: no usable GPU (%s)\n", probe.unavailable_reason.c_str());
      return 77;
    }
    cord::select_cuda_device(0);
  }
  if (!profile_dir.empty()) {
    return profile_train_step(profile_dir, device == "cpu" ? torch::Device(torch::kCPU) : torch::Device(torch::kCUDA, 0));
  }
  benchmark::RegisterBenchmark("gemm_bf16", gemm_bf16)->Iterations(20)->Repetitions(3)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("train_step", train_step)->Iterations(10)->Repetitions(3)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("train_step_phases", train_step_phases)->Iterations(10)->Repetitions(3)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("decode/kv_cache", decode_kv_cache)->Iterations(2)->Repetitions(2)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
