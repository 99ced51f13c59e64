// A job where rank 1 fails while every other rank waits in a receive that would never
// complete. cord's SPMD frame (run_spmd, the same one `cord` runs in) must print the
// failure once, with its rank, and end the whole job non-zero — not hang.
// Driven by tests/cli/test_cli.py (case abort_on_rank_failure_np2).
#include <mpi.h>

#include "cord/app/runtime.hpp"
#include "cord/core/error.hpp"

int main(int argc, char** argv) {
  return cord::app::run_spmd(argc, argv, [](const cord::comm::World& world) -> int {
    if (world.rank() == 1) throw cord::Error("injected failure for the abort test");
    int never = 0;
    MPI_Recv(&never, 1, MPI_INT, MPI_ANY_SOURCE, 12345, world.comm(), MPI_STATUS_IGNORE);
    return 0;
  });
}
