// all_reduce (sum, float32) through cord's wrapper vs raw MPI_Allreduce on the same
// buffer and communicator, at 4 MiB and 64 MiB. Run with bench/run_allreduce.sh.
//
// MPI and Google Benchmark: every rank must run the same iterations in the same order,
// so iteration counts are fixed (no adaptive counts) and the two variants alternate in
// rounds (no random interleaving); each iteration starts after a barrier and its time is
// the slowest rank's (manual time). Rank 0 alone reports.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cord/comm/collectives.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"

namespace {

using cord::comm::ProcessGroup;

enum class Variant { kRawMpi, kCord };

void run_allreduce(benchmark::State& state, const ProcessGroup& group, Variant variant, int64_t bytes) {
  const at::Tensor buffer = torch::zeros({bytes / 4}, torch::kFloat);  // zeros: sums stay finite
  for (auto _ : state) {
    MPI_Barrier(group.mpi_comm());
    const double start = MPI_Wtime();
    if (variant == Variant::kRawMpi) {
      MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(), static_cast<int>(buffer.numel()), MPI_FLOAT, MPI_SUM,
                    group.mpi_comm());
    } else {
      cord::comm::all_reduce(group, buffer, cord::comm::ReduceOp::kSum);
    }
    const double elapsed = MPI_Wtime() - start;
    double slowest = 0;
    MPI_Allreduce(&elapsed, &slowest, 1, MPI_DOUBLE, MPI_MAX, group.mpi_comm());
    state.SetIterationTime(slowest);
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["ranks"] = group.size();
}

// Reports nothing: ranks other than 0 run the same benchmarks silently.
class SilentReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  cord::comm::World world(&argc, &argv);
  torch::set_num_threads(1);
  std::vector<char*> args(argv, argv + argc);
  if (world.rank() != 0) {  // only rank 0 writes --benchmark_out
    args.erase(std::remove_if(args.begin() + 1, args.end(),
                              [](const char* a) { return std::string(a).rfind("--benchmark_out", 0) == 0; }),
               args.end());
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());

  const ProcessGroup group = ProcessGroup::world(world);
  constexpr int kRounds = 7;
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
  if (world.rank() == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    SilentReporter silent;
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::Shutdown();
  return 0;
}
