// all_reduce (sum, float32) through cord's wrapper vs raw MPI_Allreduce on the same
// buffer and communicator, at 4 MiB and 64 MiB. Run with bench/run_allreduce.sh.
//
// The two variants alternate in rounds (no random interleaving: every rank must run the
// same benchmarks in the same order; see mpi_benchmark.hpp).
#include <benchmark/benchmark.h>

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

}  // namespace

int main(int argc, char** argv) {
  cord::comm::World world(&argc, &argv);
  torch::set_num_threads(1);
  cord::bench::initialize(argc, argv, world);

  const ProcessGroup group = ProcessGroup::world(world);
  constexpr int kRounds = 15;
  struct Size {
    const char* name;
    int64_t bytes;
    int64_t iterations;
  };
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
