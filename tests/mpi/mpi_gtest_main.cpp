#include <gtest/gtest.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <optional>

#include "cord/comm/mpi_check.hpp"
#include "mpi_test_world.hpp"

namespace cord::testing {
namespace {

std::optional<comm::World> g_world;  // NOLINT: the test process's one World

// On ranks other than 0: print failed assertions only, with the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (result.failed()) {
      // One write per failure, so that lines of different ranks do not interleave.
      const std::string line = "[rank " + std::to_string(rank_) + "] " +
                               (result.file_name() != nullptr ? result.file_name() : "?") + ":" +
                               std::to_string(result.line_number()) + ": " + result.summary() + "\n";
      std::fwrite(line.data(), 1, line.size(), stderr);
    }
  }

 private:
  int rank_;
};

}  // namespace

const comm::World& world() { return *g_world; }

comm::ProcessGroup solo_group() { return comm::ProcessGroup::world(*g_world).split(g_world->rank(), 0, "solo"); }

}  // namespace cord::testing

int main(int argc, char** argv) {
  using cord::testing::g_world;
  g_world.emplace(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (g_world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new cord::testing::FailurePrinter(g_world->rank()));
  }
  const int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int failed_ranks = 0;
  CORD_MPI_CHECK(MPI_Allreduce(&local_failed, &failed_ranks, 1, MPI_INT, MPI_SUM, g_world->comm()));
  if (g_world->rank() == 0 && failed_ranks > 0) {
    std::cerr << failed_ranks << " of " << g_world->size() << " ranks had failures" << std::endl;
  }
  g_world.reset();
  return failed_ranks > 0 ? 1 : 0;
}
