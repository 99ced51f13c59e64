#pragma once
// Google Benchmark under MPI. Every rank must run the same benchmarks with the same fixed
// iteration counts (adaptive counts could differ between ranks and deadlock), each
// iteration is timed as the slowest rank's wall time after a barrier (manual time), and
// rank 0 alone reports and writes --benchmark_out.
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "cord/comm/world.hpp"

namespace cord::bench {

// Use in a benchmark registered with ->UseManualTime(). `untimed` runs before each
// iteration's barrier, outside the measured time.
template <typename Body, typename Untimed>
void time_slowest_rank(benchmark::State& state, MPI_Comm comm, Body&& body, Untimed&& untimed) {
  for (auto _ : state) {
    untimed();
    MPI_Barrier(comm);
    const double start = MPI_Wtime();
    body();
    const double elapsed = MPI_Wtime() - start;
    double slowest = 0;
    MPI_Allreduce(&elapsed, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
    state.SetIterationTime(slowest);
  }
}

template <typename Body>
void time_slowest_rank(benchmark::State& state, MPI_Comm comm, Body&& body) {
  time_slowest_rank(state, comm, std::forward<Body>(body), [] {});
}

// benchmark::Initialize, with --benchmark_out* removed on ranks other than 0.
inline void initialize(int argc, char** argv, const comm::World& world) {
  std::vector<char*> args(argv, argv + argc);
  if (world.rank() != 0) {
    args.erase(std::remove_if(args.begin() + 1, args.end(),
                              [](const char* a) { return std::string(a).rfind("--benchmark_out", 0) == 0; }),
               args.end());
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
}

// Runs what is registered: rank 0 reports, the others run silently.
inline void run(const comm::World& world) {
  class Silent : public benchmark::BenchmarkReporter {
   public:
    bool ReportContext(const Context&) override { return true; }
    void ReportRuns(const std::vector<Run>&) override {}
  };
  if (world.rank() == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    Silent silent;
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::Shutdown();
}

}  // namespace cord::bench
