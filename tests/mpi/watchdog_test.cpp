// The hang watchdog's threads, without the cord binary: no false alarm while the other
// ranks wait in a collective for one rank that is slow but moving, and clean start/stop.
// The SIGSTOP cases (a real hang ending the job with exit 3) run the whole binary:
// tests/cli/test_cli.py hang_watchdog_*. Under -DCORD_SANITIZE=thread these cover the
// watchdog thread's survey messages and its shutdown against the working thread.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <torch/torch.h>

#include "cord/comm/collectives.hpp"
#include "cord/comm/parallel_dims.hpp"
#include "cord/comm/watchdog.hpp"
#include "cord/core/progress.hpp"
#include "mpi_test_world.hpp"

namespace cord::comm {
namespace {

ProcessGroups data_parallel_groups() {
  const World& world = testing::world();
  return make_process_groups(world, ParallelDims::resolve(0, 1, world.size()), /*with_nccl=*/false);
}

// Rank 0 works (marking progress) for 4x the timeout, past the survey window, while the
// others wait in a barrier without progress of their own: they must ask, see rank 0 moving,
// and wait on. An alarm would end this process with exit code 3, failing the test.
TEST(HangWatchdog, NoAlarmWhileTheOthersWaitForASlowButMovingRank) {
  const ProcessGroups groups = data_parallel_groups();
  const double timeout_s = 1.0;
  {
    HangWatchdog watchdog(testing::world(), groups, timeout_s);
    set_progress_phase("watchdog test");
    if (groups.world.rank() == 0) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(4 * timeout_s);
      while (std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        mark_progress();  // as a long checkpoint save or validation does
      }
    }
    barrier(groups.world);
    const ProgressState state = progress_state();
    EXPECT_FALSE(state.in_collective);
    EXPECT_GE(state.collectives_entered, 1);
  }
  barrier(groups.world);  // every watchdog has stopped
}

// Watchdogs started and stopped in quick succession (each duplicates the world's
// communicator and joins its thread): no message is left in flight between them, and the
// world's own collectives still agree afterwards.
TEST(HangWatchdog, StartsAndStopsRepeatedly) {
  const ProcessGroups groups = data_parallel_groups();
  for (int round = 0; round < 5; ++round) {
    HangWatchdog watchdog(testing::world(), groups, 30.0);
    barrier(groups.world);
  }
  at::Tensor one = torch::ones({1});
  all_reduce(groups.world, one, ReduceOp::kSum);
  EXPECT_EQ(one.item<float>(), static_cast<float>(groups.world.size()));
}

}  // namespace
}  // namespace cord::comm
