#include "cord/ckpt/async_checkpoint.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <utility>

#include "checkpoint_internal.hpp"
#include "cord/core/error.hpp"
#include "cord/core/log.hpp"
#include "cord/core/progress.hpp"

namespace cord::ckpt {

namespace {

// The writer thread calls MPI while the training thread does (on other communicators).
const comm::ProcessGroups& require_thread_multiple(const comm::ProcessGroups& groups) {
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  if (level < MPI_THREAD_MULTIPLE && groups.world.size() > 1) {
    throw UsageError("ckpt.async needs MPI_THREAD_MULTIPLE, and this MPI library grants thread level " +
                     std::to_string(level) + "; set ckpt.async = false");
  }
  return groups;
}

}  // namespace

AsyncCheckpointer::AsyncCheckpointer(const comm::ProcessGroups& groups)
    : writer_groups_(comm::duplicate_process_groups(require_thread_multiple(groups), "checkpoint writer")) {}

AsyncCheckpointer::~AsyncCheckpointer() {
  if (!in_flight()) return;
  try {
    const SavedCheckpoint saved = wait();
    CORD_LOG(kInfo) << "asynchronous checkpoint " << saved.path << " committed while shutting down";
  } catch (const std::exception& e) {
    CORD_LOG(kError) << "asynchronous checkpoint failed: " << e.what();
  }
}

void AsyncCheckpointer::copy_blocks() {
  const torch::NoGradGuard no_grad;
  buffers_.resize(copies_.size());
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    ShardedTensor& copy = copies_[i];
    if (!copy.writes) {
      copy.local = at::Tensor();  // hold no reference to what this rank does not write
      continue;
    }
    const at::Tensor source = copy.local.detach();
    CORD_CHECK(source.defined(), "checkpoint tensor " + copy.key + ": a writer without data");
    at::Tensor& buffer = buffers_[i];
    if (!buffer.defined() || buffer.sizes() != source.sizes()) {
      buffer = torch::empty(source.sizes(), torch::TensorOptions().dtype(torch::kFloat).pinned_memory(source.is_cuda()));
    }
    // Blocking (the training's next optimizer step waits for it). A CPU tensor by one memcpy:
    // the writer thread should take one core, not torch's intra-op pool, from the training.
    if (!source.is_cuda() && source.is_contiguous() && source.scalar_type() == torch::kFloat) {
      std::memcpy(buffer.data_ptr(), source.data_ptr(), source.nbytes());
    } else {
      buffer.copy_(source);
    }
    copy.local = buffer;
  }
}

void AsyncCheckpointer::mark_copied() {
  {
    const std::lock_guard<std::mutex> lock(copy_mutex_);
    copied_ = true;
  }
  copy_done_.notify_all();
}

void AsyncCheckpointer::start(const SaveRequest& request, const std::vector<ShardedTensor>& tensors,
                              const Retention& retention, std::vector<std::string> superseded) {
  CORD_CHECK(!in_flight(), "asynchronous checkpoint of step " + std::to_string(request.progress.step) +
                               ": the previous save is still in flight");
  const detail::GeneratorStates states = detail::capture_generator_states(request.device);
  copies_ = tensors;  // tensor handles: the writer copies their data before the next update
  {
    const std::lock_guard<std::mutex> lock(copy_mutex_);
    copied_ = false;
  }
  done_.store(false, std::memory_order_relaxed);
  error_ = nullptr;
  writer_ = std::thread([this, request, retention, superseded = std::move(superseded), states] {
    const HelperThreadProgress helper;  // its collectives and transfers count as progress
    try {
      const auto begin = std::chrono::steady_clock::now();
      try {
        copy_blocks();
      } catch (...) {
        mark_copied();  // the training must not wait forever; the error ends the save
        throw;
      }
      copy_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
      mark_copied();
      saved_ = detail::save_captured_checkpoint(request, copies_, writer_groups_, retention, superseded, states);
    } catch (...) {
      error_ = std::current_exception();
    }
    done_.store(true, std::memory_order_release);
  });
}

void AsyncCheckpointer::wait_until_copied() {
  std::unique_lock<std::mutex> lock(copy_mutex_);
  copy_done_.wait(lock, [this] { return copied_; });
}

SavedCheckpoint AsyncCheckpointer::wait() {
  CORD_CHECK(in_flight(), "AsyncCheckpointer::wait without a save in flight");
  writer_.join();
  if (error_ != nullptr) std::rethrow_exception(std::exchange(error_, nullptr));
  return saved_;
}

int64_t AsyncCheckpointer::host_bytes() const {
  int64_t bytes = 0;
  for (const at::Tensor& buffer : buffers_) {
    if (buffer.defined()) bytes += static_cast<int64_t>(buffer.nbytes());
  }
  return bytes;
}

}  // namespace cord::ckpt
