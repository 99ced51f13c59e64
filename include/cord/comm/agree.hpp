#pragma once
// "Did any rank fail, and why?": one collective that every rank of a communicator calls
// after a step that can fail on some ranks only (opening a file, a setup check, one rank's
// read), so that all of them take the same branch afterwards instead of some waiting in
// the next collective for a rank that has thrown.
#include <mpi.h>

#include <string>

namespace cord::comm {

class ProcessGroup;

struct Agreement {
  int failed_ranks = 0;   // how many ranks reported a failure
  int first_failed = -1;  // the lowest failing rank in the communicator (-1: none)
  std::string message;    // that rank's message ("" when none failed)
  int highest_code = 0;   // the highest exit code among the failing ranks
  bool ok() const { return failed_ranks == 0; }
};

// Collective over `comm`: a rank failed when `error` is not empty; `exit_code` is its code.
// Every rank returns the same Agreement (the lowest failing rank's message is broadcast).
Agreement agree(MPI_Comm comm, const std::string& error, int exit_code = 1);
Agreement agree(const ProcessGroup& group, const std::string& error, int exit_code = 1);

}  // namespace cord::comm
