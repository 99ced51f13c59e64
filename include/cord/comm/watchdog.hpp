#pragma once
// HangWatchdog: ends the job when no rank has made progress for runtime.hang_timeout_s.
//
// MPI collectives have no timeout, so a rank that stops without dying (SIGSTOP, a frozen
// node, a wedged file system or GPU, a deadlock) leaves the others waiting forever. A
// thread on every rank watches this process's progress record (core/progress.hpp). Once
// the record is older than the timeout, the thread asks every other rank's watchdog for
// its record over a private duplicate of MPI_COMM_WORLD (hence MPI_THREAD_MULTIPLE):
//   - a rank still making progress (a long save or validation) means this one is only
//     waiting for it: no alarm, ask again later;
//   - otherwise the job hangs: the lowest rank that answered prints one message naming the
//     ranks that stopped (no answer = stopped or gone; else the ranks outside any
//     collective; else the ranks behind in collective count) with every rank's step and
//     collective, then ends every rank with exit code 3 (MPI_Abort). A rank that answered
//     but is not the lowest does the same after a grace period, in case the reporter hangs.
// On CUDA runs the thread also polls each NCCL communicator for an asynchronous error and
// aborts the communicators before ending the job, so no GPU stays blocked in a kernel.
//
// Detection takes at most timeout + the survey window (max(2 s, timeout / 5)) + one poll.
#include <memory>
#include <thread>

#include "cord/comm/process_group.hpp"

namespace cord::comm {

class World;

class HangWatchdog {
 public:
  // Collective over the world (duplicates its communicator). timeout_s > 0. Throws
  // CommError when MPI was not started with MPI_THREAD_MULTIPLE.
  HangWatchdog(const World& world, const ProcessGroups& groups, double timeout_s);
  ~HangWatchdog();  // stops and joins the thread, then frees its requests and communicator
  HangWatchdog(const HangWatchdog&) = delete;
  HangWatchdog& operator=(const HangWatchdog&) = delete;

  struct State;

 private:
  std::unique_ptr<State> state_;
  std::thread thread_;
};

}  // namespace cord::comm
