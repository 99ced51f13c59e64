#pragma once
// Asynchronous checkpoints (ckpt.async): the training does not wait for the write. A
// writer thread first copies the step's tensors into host memory, while the training
// runs the next step's forward and backward (which only read them), then runs every
// phase of save_checkpoint (checksums, the collective write, fsync, rename, the commit
// marker, retention) while training goes on.
//
// Invariants:
//   - at most one save is in flight; start() requires that none is;
//   - nothing changes the saved tensors before wait_until_copied() returns: the training
//     calls it before its next optimizer step (train/checkpointing.hpp's before_update);
//   - the copy is of the state at start() (generator states are captured by start()
//     itself), so the file is the one a synchronous save at that step writes, bit for bit,
//     but for the header's clock and host;
//   - the writer thread talks to the other ranks only through its own duplicated
//     communicators (comm::duplicate_process_groups), never the training thread's, and to
//     HDF5 only through h5::File, whose process-wide lock it shares with the corpus reads;
//   - a commit happens on the writer thread or not at all: a crash or a failure mid-write
//     leaves the previous committed checkpoint and the marker as they were.
// The buffers are kept between saves (one copy of this rank's written blocks: the host
// memory the option costs, host_bytes()); on a CUDA run they are pinned, so that each
// tensor's device-to-host copy runs at the link's speed.
#include <ATen/core/Tensor.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cord/ckpt/checkpoint.hpp"
#include "cord/comm/process_group.hpp"

namespace cord::ckpt {

class AsyncCheckpointer {
 public:
  // Collective over groups.world: duplicates the communicators for the writer thread.
  explicit AsyncCheckpointer(const comm::ProcessGroups& groups);
  // Waits for a save in flight; its error, if any, is logged (call wait() to receive it).
  ~AsyncCheckpointer();
  AsyncCheckpointer(const AsyncCheckpointer&) = delete;
  AsyncCheckpointer& operator=(const AsyncCheckpointer&) = delete;

  // Collective over the world (the writer's phases are). Captures this rank's generator
  // states and starts the writer thread, which copies the blocks this rank writes before
  // anything else. Requires !in_flight(). `retention.remover`, if any, is used by the
  // writer thread only until wait() returns.
  void start(const SaveRequest& request, const std::vector<ShardedTensor>& tensors, const Retention& retention,
             std::vector<std::string> superseded);

  // Returns once the writer thread holds its copy of the tensors (at once when no save is
  // in flight): the tensors may change after that.
  void wait_until_copied();

  // A save was started and wait() has not collected it yet.
  bool in_flight() const { return writer_.joinable(); }
  // In flight and its writer thread has returned (committed, or failed on every rank).
  bool finished() const { return in_flight() && done_.load(std::memory_order_acquire); }

  // Returns once the save in flight has ended, with what it saved; rethrows its error (the
  // writer's phases agree, so every rank gets the same outcome). Requires in_flight().
  SavedCheckpoint wait();

  // Host memory held for the copies (bytes; read after wait_until_copied or wait), and how
  // long the writer thread took to copy in the last save (s).
  int64_t host_bytes() const;
  double copy_seconds() const { return copy_seconds_; }

 private:
  void copy_blocks();  // on the writer thread: copies_' writer blocks into buffers_
  void mark_copied();

  comm::ProcessGroups writer_groups_;
  std::vector<ShardedTensor> copies_;  // the save's tensors; after the copy, `local` = host buffer
  std::vector<at::Tensor> buffers_;    // kept between saves, one per tensor index (undefined: not written here)
  std::thread writer_;
  std::mutex copy_mutex_;
  std::condition_variable copy_done_;
  bool copied_ = true;                 // guarded by copy_mutex_
  std::atomic<bool> done_{false};
  SavedCheckpoint saved_;              // the writer's result, read after join
  std::exception_ptr error_;           // or its error
  double copy_seconds_ = 0;
};

}  // namespace cord::ckpt
