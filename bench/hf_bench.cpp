// A training step of a Hugging Face decoder in cord, the same work as the PyTorch eager
// step of bench/hf/smollm2.py (which runs this program and compares the two):
//
//   hf_train_step/<batch>/<length>   B sequences of T fixed pseudo-random ids; forward;
//       cross-entropy on the last T/2 positions of each (mean over them); backward; one
//       AdamW update of every decoder parameter (lr 1e-5, betas 0.9/0.95, eps 1e-8, weight
//       decay 0.1 on matrices). One rank, torch threads from CORD_BENCH_THREADS (default 2).
//       Counters: forward_ms (with the loss), backward_ms, adamw_ms per step; first_loss, the
//       warm-up step's loss on the unchanged model (PyTorch's first loss must equal it).
//
// The model is CORD_HF_MODEL (a directory `cord` loads with model.source = hf:DIR, e.g.
// ./setup.sh smollm2's); without it the benchmark reports an error and measures nothing.
#include <benchmark/benchmark.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/hf/hf_model.hpp"
#include "cord/model/batch.hpp"
#include "cord/train/optimizer.hpp"
#include "mpi_benchmark.hpp"

namespace {

using namespace cord;

const comm::World* g_world = nullptr;  // NOLINT: the benchmark process's World

struct Step {
  at::Tensor ids;      // [B, T] int64
  at::Tensor targets;  // [B, T] int64: the next id on the last T/2 positions, else -1
};

// The same ids as smollm2.py's step: (b * 7919 + t * 131) % (V - 1) + 1.
Step make_step(int64_t batch, int64_t length, int64_t vocab) {
  const at::Tensor b = torch::arange(batch, torch::kLong).unsqueeze(1);
  const at::Tensor t = torch::arange(length, torch::kLong).unsqueeze(0);
  Step step;
  step.ids = (b * 7919 + t * 131).remainder(vocab - 1) + 1;
  step.targets = torch::full({batch, length}, -1, torch::kLong);
  step.targets.slice(1, length / 2 - 1, length - 1).copy_(step.ids.slice(1, length / 2, length));
  return step;
}

void hf_train_step(benchmark::State& state) {
  const char* directory = std::getenv("CORD_HF_MODEL");
  if (directory == nullptr) {
    state.SkipWithError("set CORD_HF_MODEL to a Hugging Face model directory (./setup.sh smollm2)");
    return;
  }
  const char* threads = std::getenv("CORD_BENCH_THREADS");
  torch::set_num_threads(threads != nullptr ? std::atoi(threads) : 2);
  const comm::ProcessGroup solo = comm::ProcessGroup::world(*g_world).split(g_world->rank(), 0, "solo");
  ModelConfig config;
  config.source = std::string("hf:") + directory;
  hf::resolve_model_source(config);
  model::Lalm model(config, solo, hf::hf_initialization(config));
  hf::load_hf_model(directory, model);
  std::vector<model::ParamShard> decoder;
  for (model::ParamShard& shard : model::sharded_parameters(*model, solo)) {
    if (shard.name.rfind("decoder.", 0) == 0) decoder.push_back(shard);
  }
  for (at::Tensor& p : model->encoder->parameters()) p.requires_grad_(false);
  for (at::Tensor& p : model->projector->parameters()) p.requires_grad_(false);
  train::AdamW optimizer(decoder, train::AdamWOptions{});
  const Step step = make_step(state.range(0), state.range(1), config.vocab_size);
  const at::Tensor positions = torch::arange(step.ids.size(1), torch::kLong).unsqueeze(0).expand_as(step.ids);
  model::AttentionMask mask;
  mask.causal = true;
  double loss_value = 0;
  std::array<double, 3> phase_seconds{};  // forward (with the loss), backward, AdamW
  auto train_step = [&] {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    model->zero_grad();
    const at::Tensor logits = model->decoder->forward(model->decoder->embed(step.ids), positions, mask);
    const model::TokenLoss loss = model::response_cross_entropy(logits, step.targets, solo);
    const at::Tensor mean = loss.sum / static_cast<double>(loss.tokens);
    const auto forward_done = Clock::now();
    mean.backward();
    const auto backward_done = Clock::now();
    optimizer.step(1e-5);
    const auto end = Clock::now();
    phase_seconds[0] += std::chrono::duration<double>(forward_done - start).count();
    phase_seconds[1] += std::chrono::duration<double>(backward_done - forward_done).count();
    phase_seconds[2] += std::chrono::duration<double>(end - backward_done).count();
    loss_value = mean.item<double>();
  };
  train_step();  // warm-up: first touch of the gradients and of m and v
  state.counters["first_loss"] = loss_value;  // of the unchanged model: equal to PyTorch's
  phase_seconds = {};
  bench::time_slowest_rank(state, solo.mpi_comm(), train_step);
  const double steps = static_cast<double>(state.iterations());
  state.counters["forward_ms"] = 1e3 * phase_seconds[0] / steps;
  state.counters["backward_ms"] = 1e3 * phase_seconds[1] / steps;
  state.counters["adamw_ms"] = 1e3 * phase_seconds[2] / steps;
  state.counters["tokens_per_step"] = static_cast<double>(step.ids.numel());
  state.counters["last_loss"] = loss_value;
  state.counters["threads"] = torch::get_num_threads();
}

}  // namespace

int main(int argc, char** argv) {
  cord::comm::World world(&argc, &argv);
  g_world = &world;
  bench::initialize(argc, argv, world);
  benchmark::RegisterBenchmark("hf_train_step", hf_train_step)
      ->Args({8, 128})->Iterations(5)->Repetitions(3)->UseManualTime()->Unit(benchmark::kMillisecond);
  bench::run(world);
  return 0;
}
