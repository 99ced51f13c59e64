// Model benchmarks of the small config (d 128, 4 layers, 4 heads: ~0.9M decoder params).
// Run with bench/run_model.sh, which also computes MFU and writes bench/results/.
//
//   mpiexec -n 1:  gemm_fp32/<threads>          the machine's fp32 matmul peak (1024^3)
//                  train_step/<threads>         forward + backward of a text batch (64 x ~41)
//                  decode/kv_cache, decode/recompute   200 new tokens for 32 prompts
//                  adamw_step/<config>          one AdamW update of the decoder's parameters
//                                               (0 = small, 1 = medium, 2 = gpu config), 1 thread
//   mpiexec -n 2:  train_step_tp/<tp>           the same step on 2 ranks, tp = 1 (each rank
//                                               the whole step) vs tp = 2 (split), 1 thread each
// Under MPI (see mpi_benchmark.hpp) every rank runs the same fixed iterations, timed as
// the slowest rank; rank 0 reports.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <torch/torch.h>

#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"
#include "cord/config/load.hpp"
#include "cord/model/batch.hpp"
#include "cord/model/generate.hpp"
#include "cord/model/model_stats.hpp"
#include "cord/train/optimizer.hpp"
#include "mpi_benchmark.hpp"

namespace {

using namespace cord;
using model::TokenRows;

const comm::World* g_world = nullptr;  // NOLINT: the benchmark process's World

ModelConfig small_config() {
  ModelConfig c;  // the defaults are the small CPU config
  c.vocab_size = 256;
  return c;
}

TokenRows rows(int64_t count, int64_t length, int64_t vocab, int64_t seed) {
  TokenRows out;
  for (int64_t i = 0; i < count; ++i) {
    std::vector<int64_t> row;
    for (int64_t t = 0; t < length; ++t) row.push_back(6 + (seed * 7919 + i * 131 + t * 17) % (vocab - 6));
    out.push_back(row);
  }
  return out;
}

void gemm_fp32(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
  const at::Tensor a = torch::randn({1024, 1024});
  const at::Tensor b = torch::randn({1024, 1024});
  at::Tensor c = torch::empty({1024, 1024});
  for (auto _ : state) {
    at::mm_out(c, a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["flops"] = benchmark::Counter(2.0 * 1024 * 1024 * 1024, benchmark::Counter::kIsIterationInvariantRate);
}

struct TrainBatch {
  TokenRows questions = rows(64, 20, 256, 1);
  TokenRows responses = rows(64, 18, 256, 2);
  int64_t tokens() const { return 64 * (3 + 20 + 18); }  // positions per step
};

void train_step(model::Lalm& model, const TrainBatch& batch) {
  model->zero_grad();
  const model::DecoderBatch text =
      model::assemble_text(model, batch.questions, batch.responses, model::SpecialTokens{}, model::Padding::kRight);
  const model::TokenLoss loss = model::response_cross_entropy(
      model->decoder->forward(text.embeds, text.positions, text.mask), text.targets, model->tp_group());
  (loss.sum / static_cast<double>(loss.tokens)).backward();
}

void train_step_threads(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
  const comm::ProcessGroup solo = comm::ProcessGroup::world(*g_world).split(g_world->rank(), 0, "solo");
  model::Lalm model(small_config(), solo);
  const TrainBatch batch;
  train_step(model, batch);  // warm-up
  bench::time_slowest_rank(state, solo.mpi_comm(), [&] { train_step(model, batch); });
  state.counters["tokens_per_step"] = static_cast<double>(batch.tokens());
  state.counters["train_flops_per_token"] = model::compute_model_stats(small_config(), 41, 0).decoder_train_flops_per_token;
}

void train_step_tp(benchmark::State& state, int tp) {
  torch::set_num_threads(1);
  const comm::ProcessGroup world = comm::ProcessGroup::world(*g_world);
  // tp = 1: every rank its own whole model; tp = 2: one model split over both ranks.
  const comm::ProcessGroup group = world.split(tp == 1 ? g_world->rank() : 0, g_world->rank(), "tp");
  model::Lalm model(small_config(), group);
  const TrainBatch batch;
  train_step(model, batch);
  bench::time_slowest_rank(state, world.mpi_comm(), [&] { train_step(model, batch); });
  state.counters["tokens_per_step"] = static_cast<double>(batch.tokens());
}

void decode(benchmark::State& state) {
  torch::set_num_threads(1);
  const bool kv_cache = state.range(0) == 1;
  const comm::ProcessGroup solo = comm::ProcessGroup::world(*g_world).split(g_world->rank(), 0, "solo");
  model::Lalm model(small_config(), solo);
  model::SpecialTokens tokens;
  tokens.eos = -1;  // never sampled: every sequence decodes all 200 tokens
  torch::NoGradGuard no_grad;
  const model::DecoderBatch prompts = model::assemble_text(model, rows(32, 17, 256, 3), TokenRows(32), tokens,
                                                           model::Padding::kLeft);
  model::SamplingOptions options;
  options.max_new_tokens = 200;
  options.temperature = 1.0;
  options.use_kv_cache = kv_cache;
  int64_t generated = 0;
  bench::time_slowest_rank(state, solo.mpi_comm(), [&] {
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(1);
    const model::Generation out = model::generate(model, prompts, tokens, options, generator);
    generated = 0;
    for (const auto& row : out.tokens) generated += static_cast<int64_t>(row.size());
  });
  state.counters["new_tokens"] = static_cast<double>(generated);
}

// One AdamW step over the decoder's parameters, every one with a fixed random gradient:
// memory-bound elementwise work, ~4 reads and 3 writes of float32 per parameter element.
void adamw_step(benchmark::State& state) {
  torch::set_num_threads(1);
  const char* jobs[] = {nullptr, "jobs/model_medium.toml", "jobs/model_gpu.toml"};
  const char* job = jobs[state.range(0)];
  const ModelConfig config = job == nullptr ? small_config() : load_config(job, {}).model;
  const comm::ProcessGroup solo = comm::ProcessGroup::world(*g_world).split(g_world->rank(), 0, "solo");
  model::Lalm model(config, solo);
  std::vector<model::ParamShard> decoder;
  int64_t elements = 0;
  for (model::ParamShard& shard : model::sharded_parameters(*model, solo)) {
    if (shard.name.rfind("decoder.", 0) != 0) continue;
    shard.param.mutable_grad() = torch::randn_like(shard.param);
    elements += shard.param.numel();
    decoder.push_back(shard);
  }
  train::AdamW optimizer(decoder, train::AdamWOptions{});
  optimizer.step(1e-4);  // warm-up: first touch of m and v
  bench::time_slowest_rank(state, solo.mpi_comm(), [&] { optimizer.step(1e-4); });
  state.counters["parameters"] = static_cast<double>(elements);
}

}  // namespace

int main(int argc, char** argv) {
  cord::comm::World world(&argc, &argv);
  g_world = &world;
  bench::initialize(argc, argv, world);
  if (world.size() == 1) {
    benchmark::RegisterBenchmark("gemm_fp32", gemm_fp32)->Arg(1)->Arg(2)->MinTime(1.0)->UseRealTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("train_step", train_step_threads)
        ->Arg(1)->Arg(2)->Iterations(10)->Repetitions(3)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("decode/kv_cache", decode)->Arg(1)->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("adamw_step", adamw_step)
        ->Arg(0)->Arg(1)->Arg(2)->Iterations(5)->Repetitions(3)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("decode/recompute", decode)->Arg(0)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  } else {
    for (int round = 0; round < 3; ++round) {
      for (int tp : {1, 2}) {
        benchmark::RegisterBenchmark(("train_step_tp/" + std::to_string(tp) + "/round:" + std::to_string(round)).c_str(),
                                     train_step_tp, tp)
            ->Iterations(10)->UseManualTime()->Unit(benchmark::kMillisecond);
      }
    }
  }
  bench::run(world);
  return 0;
}
