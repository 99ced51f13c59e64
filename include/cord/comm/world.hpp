#pragma once
// World: the MPI runtime of this process (RAII). Exactly one exists, created first in
// main and destroyed last; it initialises MPI once and finalises it once.
// Local rank and local size come from a shared-memory split of MPI_COMM_WORLD.
#include <mpi.h>

#include <string>

namespace cord::comm {

class World {
 public:
  World(int* argc, char*** argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // rank among the processes on this node
  int local_size() const { return local_size_; }  // processes on this node
  const std::string& host() const { return host_; }
  int thread_level() const { return thread_level_; }  // MPI_THREAD_* granted
  MPI_Comm comm() const { return MPI_COMM_WORLD; }

  // Ends every rank of the job with `exit_code` (MPI_Abort); never returns.
  [[noreturn]] void abort(int exit_code) const;

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int thread_level_ = 0;
  std::string host_;
};

// "Open MPI v4.1.4, ..." — the first line of MPI_Get_library_version.
std::string mpi_library_version();

}  // namespace cord::comm
