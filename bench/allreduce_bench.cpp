// all_reduce (sum, float32) through cord's wrapper vs raw MPI_Allreduce on the same
// buffer and communicator, at 4 MiB and 64 MiB. Run with bench/run_allreduce.sh.
//
// With --sweep instead: raw MPI_Allreduce from 4 B to 4 MiB (sweep/<bytes>B/round:k), the
// latency and bandwidth constants of bench/run_scaling.sh's performance model.
//
// The two variants alternate in rounds (no random interleaving: every rank must run the
// same benchmarks in the same order; see mpi_benchmark.hpp).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cord/comm/collectives.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"
#include "mpi_benchmark.hpp"

namespace {

using cord::comm::ProcessGroup;

enum class Variant { kRawMpi, kCord };

void run_allreduce(benchmark::State& state, const ProcessGroup& group, Variant variant, int64_t bytes) {
  const at::Tensor buffer = torch::zeros({bytes / 4}, torch::kFloat);  // zeros: sums stay finite
  cord::bench::time_slowest_rank(state, group.mpi_comm(), [&] {
    if (variant == Variant::kRawMpi) {
      MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(), static_cast<int>(buffer.numel()), MPI_FLOAT, MPI_SUM,
                    group.mpi_comm());
    } else {
      cord::comm::all_reduce(group, buffer, cord::comm::ReduceOp::kSum);
    }
  });
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["ranks"] = group.size();
}

struct Size {
  const char* name;
  int64_t bytes;
  int64_t iterations;
};

// Raw MPI_Allreduce over message sizes, sizes alternating within each of 5 rounds.
void register_sweep(const ProcessGroup& group) {
  const std::vector<Size> sizes = {{"4B", 4, 200},         {"64B", 64, 200},         {"1024B", 1024, 200},
                                   {"16384B", 16384, 200}, {"262144B", 262144, 100}, {"1048576B", 1 << 20, 100},
                                   {"4194304B", 4 << 20, 50}};
  for (int round = 0; round < 5; ++round) {
    for (const Size& size : sizes) {
      const std::string name = std::string("sweep/") + size.name + "/round:" + std::to_string(round);
      benchmark::RegisterBenchmark(name.c_str(), run_allreduce, group, Variant::kRawMpi, size.bytes)
          ->Iterations(size.iterations)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  cord::comm::World world(&argc, &argv);
  torch::set_num_threads(1);
  const bool sweep = std::any_of(argv + 1, argv + argc, [](const char* a) { return std::strcmp(a, "--sweep") == 0; });
  argc = static_cast<int>(std::remove_if(argv + 1, argv + argc, [](const char* a) { return std::strcmp(a, "--sweep") == 0; }) - argv);
  cord::bench::initialize(argc, argv, world);

  const ProcessGroup group = ProcessGroup::world(world);
  if (sweep) {
    register_sweep(group);
    cord::bench::run(world);
    return 0;
  }
  constexpr int kRounds = 15;
  for (int round = 0; round < kRounds; ++round) {
    for (const Size& size : {Size{"4MiB", 4 << 20, 200}, Size{"64MiB", 64 << 20, 15}}) {
      for (const Variant variant : {Variant::kRawMpi, Variant::kCord}) {
        const std::string name = std::string(variant == Variant::kRawMpi ? "raw_mpi_allreduce/" : "cord_all_reduce/") +
                                 size.name + "/round:" + std::to_string(round);
        benchmark::RegisterBenchmark(name.c_str(), run_allreduce, group, variant, size.bytes)
            ->Iterations(size.iterations)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  cord::bench::run(world);
  return 0;
}
