// Checkpoint write and read throughput (ckpt/checkpoint.hpp) for the small config (d 128,
// 4 layers) and a larger one (d 512, 8 layers), under tp = world size: each rank writes its
// tensor-parallel shards into one file with parallel HDF5. A checkpoint holds the
// parameters and AdamW's m and v (12 bytes per parameter). Run with bench/run_ckpt.sh, which
// also times `dd` of the same size on the same disk and writes bench/results/.
//
//   save/<config>   save_checkpoint: checksums, collective write, fsync, rename, marker,
//                   retention (deletes the previous file); counters: each phase's mean ms
//   async/<config>  AsyncCheckpointer::start + wait_until_copied: the longest the training can
//                   wait for an asynchronous save (its next optimizer step waits for the host
//                   copy, which otherwise overlaps the step's forward and backward); untimed:
//                   the rest of the save. Counters: save_ms (the writer's whole save),
//                   copy_ms (its copy), host_MB (the copy buffers)
//   fixed/small     save_checkpoint of the small config's datasets, each holding one element:
//                   the cost of a save that does not depend on its bytes (dataset creation,
//                   attributes, collective calls, commit); counter: datasets
//   load/<config>   load_checkpoint of that file into this rank's shards (the file was just
//                   written, so it is read from the page cache: an upper bound for a cold read)
// The folder is $CORD_CKPT_BENCH_DIR (default /tmp/cord_ckpt_bench). Under MPI every rank runs
// the same fixed iterations, timed as the slowest rank (mpi_benchmark.hpp).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <algorithm>
#include <string>
#include <thread>

#include <torch/torch.h>

#include "cord/ckpt/async_checkpoint.hpp"
#include "cord/ckpt/checkpoint.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"
#include "cord/model/lalm.hpp"
#include "cord/train/checkpointing.hpp"
#include "cord/train/optimizer.hpp"
#include "mpi_benchmark.hpp"

namespace {

using namespace cord;

const comm::World* g_world = nullptr;  // NOLINT: the benchmark process's World

ModelConfig config_named(const std::string& name) {
  ModelConfig c;  // the defaults are the small CPU config
  c.vocab_size = 256;
  if (name == "large") {
    c.d_model = 512;
    c.n_layers = 8;
    c.n_heads = 8;
    c.audio.d_model = 256;
  }
  return c;
}

std::string bench_dir() {
  const char* dir = std::getenv("CORD_CKPT_BENCH_DIR");
  return dir != nullptr ? dir : "/tmp/cord_ckpt_bench";
}

struct Setup {
  comm::ProcessGroups groups;
  model::Lalm model{nullptr};
  std::unique_ptr<train::AdamW> optimizer;
  std::vector<ckpt::ShardedTensor> tensors;
  ckpt::SaveRequest request;
};

Setup make_setup(const std::string& name) {
  const comm::ParallelDims dims = comm::ParallelDims::resolve(1, g_world->size(), g_world->size());
  Setup s{comm::make_process_groups(*g_world, dims, false), model::Lalm{nullptr}, nullptr, {}, {}};
  s.model = model::Lalm(config_named(name), s.groups.tp);
  s.optimizer = std::make_unique<train::AdamW>(model::sharded_parameters(*s.model, s.groups.tp), train::AdamWOptions{});
  s.tensors = train::checkpoint_tensors(s.model, *s.optimizer, s.groups, false);
  s.request.directory = bench_dir() + "/" + name;
  s.request.progress.stage = "text";
  s.request.progress.run_id = "bench";
  s.request.model = config_named(name);
  s.request.device = "cpu";
  return s;
}

void save(benchmark::State& state, const std::string& name) {
  Setup s = make_setup(name);
  int64_t bytes = 0, step = 0;
  ckpt::BackgroundRemover removals;
  double write = 0, commit = 0, cleanup = 0;  // summed phase seconds (rank 0's clock)
  bench::time_slowest_rank(
      state, s.groups.world.mpi_comm(),
      [&] {
        s.request.progress.step = ++step;
        // As cord saves: the replaced checkpoint is deleted in the background, while
        // training goes on (here: between iterations, untimed).
        const ckpt::SavedCheckpoint saved =
            ckpt::save_checkpoint(s.request, s.tensors, s.groups, ckpt::Retention{1, 0, &removals});
        bytes = saved.bytes;
        write += saved.write_seconds;
        commit += saved.commit_seconds;
        cleanup += saved.cleanup_seconds;
      },
      [&] { removals.wait(); });
  state.SetBytesProcessed(bytes * static_cast<int64_t>(state.iterations()));
  state.counters["file_bytes"] = static_cast<double>(bytes);
  // Mean phase times per save, in ms.
  const double per_save_ms = 1000.0 / static_cast<double>(state.iterations());
  state.counters["write_ms"] = write * per_save_ms;
  state.counters["commit_ms"] = commit * per_save_ms;
  state.counters["cleanup_ms"] = cleanup * per_save_ms;
}

// The small config's checkpoint with every tensor cut to one element (written by rank 0):
// the same datasets, attributes and collective calls, almost no bytes.
void fixed_cost(benchmark::State& state) {
  Setup s = make_setup("small");
  for (ckpt::ShardedTensor& t : s.tensors) {
    t.local = torch::zeros({1});
    t.global_shape = {1};
    t.split_dim = -1;
    t.offset = 0;
    t.writes = s.groups.world.rank() == 0;
  }
  s.request.directory = bench_dir() + "/fixed";
  int64_t step = 0;
  ckpt::BackgroundRemover removals;
  bench::time_slowest_rank(
      state, s.groups.world.mpi_comm(),
      [&] {
        s.request.progress.step = ++step;
        ckpt::save_checkpoint(s.request, s.tensors, s.groups, ckpt::Retention{1, 0, &removals});
      },
      [&] { removals.wait(); });
  state.counters["datasets"] = static_cast<double>(s.tensors.size() + 2);  // + /loader, /rng/cpu
}

void async_save(benchmark::State& state, const std::string& name) {
  Setup s = make_setup(name);
  int64_t step = 0;
  ckpt::BackgroundRemover removals;
  ckpt::AsyncCheckpointer writer(s.groups);
  double saving = 0, copying = 0;  // summed seconds of the writer's saves and copies
  auto finish = [&] {
    if (!writer.in_flight()) return;
    saving += writer.wait().seconds;
    copying += writer.copy_seconds();
    removals.wait();
  };
  bench::time_slowest_rank(
      state, s.groups.world.mpi_comm(),
      [&] {
        s.request.progress.step = ++step;
        writer.start(s.request, s.tensors, ckpt::Retention{1, 0, &removals}, {});
        writer.wait_until_copied();
      },
      finish);
  finish();
  const double per_save_ms = 1000.0 / static_cast<double>(state.iterations());
  state.counters["save_ms"] = saving * per_save_ms;
  state.counters["copy_ms"] = copying * per_save_ms;
  state.counters["host_MB"] = static_cast<double>(writer.host_bytes()) / 1e6;
}

void load(benchmark::State& state, const std::string& name) {
  Setup s = make_setup(name);
  s.request.progress.step = 1;
  const ckpt::SavedCheckpoint saved = ckpt::save_checkpoint(s.request, s.tensors, s.groups, ckpt::Retention{1, 0});
  bench::time_slowest_rank(state, s.groups.world.mpi_comm(), [&] {
    ckpt::load_checkpoint(saved.path, s.tensors, s.groups, s.request.model, "text");
  });
  state.SetBytesProcessed(saved.bytes * static_cast<int64_t>(state.iterations()));
  state.counters["file_bytes"] = static_cast<double>(saved.bytes);
}

}  // namespace

int main(int argc, char** argv) {
  cord::comm::World world(&argc, &argv);
  g_world = &world;
  // As cord runs: the node's cores shared by its ranks (the checksums use these threads).
  torch::set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world.size()));
  bench::initialize(argc, argv, world);
  for (const char* name : {"small", "large"}) {
    const std::string config = name;
    benchmark::RegisterBenchmark(("save/" + config).c_str(), [config](benchmark::State& st) { save(st, config); })
        ->Iterations(5)->Repetitions(3)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("async/" + config).c_str(), [config](benchmark::State& st) { async_save(st, config); })
        ->Iterations(5)->Repetitions(3)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("load/" + config).c_str(), [config](benchmark::State& st) { load(st, config); })
        ->Iterations(5)->Repetitions(3)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("fixed/small", fixed_cost)
      ->Iterations(5)->Repetitions(3)->UseManualTime()->Unit(benchmark::kMillisecond);
  bench::run(world);
  return 0;
}
