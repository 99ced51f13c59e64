#include "cord/comm/agree.hpp"

#include <climits>
#include <vector>

#include "cord/comm/mpi_check.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/core/progress.hpp"

namespace cord::comm {

Agreement agree(MPI_Comm comm, const std::string& error, int exit_code) {
  const CollectiveProgress progress("agree (setup outcome)", "world");
  int rank = 0;
  CORD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  const bool failed = !error.empty();
  // [failed ranks, -(lowest failing rank), highest exit code] in one reduction each way.
  int sums[1] = {failed ? 1 : 0};
  int maxima[2] = {failed ? -rank : INT_MIN, failed ? exit_code : INT_MIN};
  Agreement out;
  CORD_MPI_CHECK(MPI_Allreduce(sums, &out.failed_ranks, 1, MPI_INT, MPI_SUM, comm));
  int reduced[2] = {0, 0};
  CORD_MPI_CHECK(MPI_Allreduce(maxima, reduced, 2, MPI_INT, MPI_MAX, comm));
  if (out.failed_ranks == 0) return out;
  out.first_failed = -reduced[0];
  out.highest_code = reduced[1];
  // The first failing rank's message: its length, then its bytes.
  int length = rank == out.first_failed ? static_cast<int>(error.size()) : 0;
  CORD_MPI_CHECK(MPI_Bcast(&length, 1, MPI_INT, out.first_failed, comm));
  std::vector<char> text(static_cast<size_t>(length));
  if (rank == out.first_failed) text.assign(error.begin(), error.end());
  if (length > 0) CORD_MPI_CHECK(MPI_Bcast(text.data(), length, MPI_CHAR, out.first_failed, comm));
  out.message.assign(text.begin(), text.end());
  return out;
}

Agreement agree(const ProcessGroup& group, const std::string& error, int exit_code) {
  return agree(group.mpi_comm(), error, exit_code);
}

}  // namespace cord::comm
