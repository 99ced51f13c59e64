// Argument checks shared by every collective, then dispatch to the MPI (CPU) or
// NCCL (CUDA) backend. See collectives.hpp for the contract.
#include "cord/comm/collectives.hpp"

#include <atomic>
#include <chrono>
#include <sstream>

#include <ATen/ATen.h>

#include "backends.hpp"
#include "cord/comm/mpi_check.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/core/error.hpp"
#include "cord/core/progress.hpp"

namespace cord::comm {
namespace {

enum class Backend { kMpi, kNccl };

// Adds the wall time of its scope to the group's blocked_seconds(), and tells the hang
// watchdog (core/progress.hpp) that this process is inside collective `op`.
class BlockedTimer {
 public:
  BlockedTimer(const ProcessGroup& group, const char* op)
      : group_(group), progress_(op, group.name()), start_(std::chrono::steady_clock::now()) {}
  ~BlockedTimer() {
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    group_.add_blocked_nanoseconds(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
  }
  BlockedTimer(const BlockedTimer&) = delete;
  BlockedTimer& operator=(const BlockedTimer&) = delete;

 private:
  const ProcessGroup& group_;
  const CollectiveProgress progress_;
  std::chrono::steady_clock::time_point start_;
};

bool supported_dtype(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
    case at::kDouble:
    case at::kBFloat16:
    case at::kInt:
    case at::kLong: return true;
    default: return false;
  }
}

[[noreturn]] void reject(const ProcessGroup& group, const char* what, const std::string& problem) {
  throw Error(std::string(what) + " on group '" + group.name() + "': " + problem + " (" +
              process_identity() + ")");
}

std::string describe(const at::Tensor& t) {
  std::ostringstream os;
  os << "sizes " << t.sizes() << ", strides " << t.strides();
  return os.str();
}

// Checks one tensor and picks the backend that serves its device.
Backend check_tensor(const ProcessGroup& group, const char* what, const at::Tensor& t) {
  if (!t.defined()) reject(group, what, "tensor is undefined");
  if (!supported_dtype(t.scalar_type())) {
    reject(group, what,
           std::string("dtype ") + at::toString(t.scalar_type()) +
               " is not supported (float32, float64, bfloat16, int32, int64)");
  }
  if (!t.is_contiguous()) reject(group, what, "tensor is not contiguous (" + describe(t) + ")");
  if (t.is_cpu()) return Backend::kMpi;
  if (t.is_cuda()) {
    if (!group.has_nccl()) {
      reject(group, what, "CUDA tensor but the group has no NCCL communicator (runtime.device is not cuda)");
    }
    return Backend::kNccl;
  }
  reject(group, what, "tensor on device '" + t.device().str() +
                          "'; collectives take CPU tensors (MPI) or CUDA tensors (NCCL)");
}

Backend check_pair(const ProcessGroup& group, const char* what, const at::Tensor& input,
                   const at::Tensor& output) {
  const Backend backend = check_tensor(group, what, input);
  check_tensor(group, what, output);
  if (input.scalar_type() != output.scalar_type()) {
    reject(group, what, std::string("input dtype ") + at::toString(input.scalar_type()) +
                            " != output dtype " + at::toString(output.scalar_type()));
  }
  if (input.device() != output.device()) {
    reject(group, what, "input on " + input.device().str() + ", output on " + output.device().str());
  }
  return backend;
}

void check_op(const ProcessGroup& group, const char* what, const at::Tensor& t, ReduceOp op) {
  if (op == ReduceOp::kAvg && !at::isFloatingType(t.scalar_type())) {
    reject(group, what, std::string("ReduceOp avg needs a floating-point tensor, got ") +
                            at::toString(t.scalar_type()));
  }
}

#ifndef CORD_WITH_CUDA
[[noreturn]] void no_nccl() { throw Error("NCCL backend requested in a build without CUDA"); }
#endif

}  // namespace

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
  }
  return "?";
}

void all_reduce(const ProcessGroup& group, const at::Tensor& tensor, ReduceOp op) {
  const BlockedTimer blocked(group, "all_reduce");
  const Backend backend = check_tensor(group, "all_reduce", tensor);
  check_op(group, "all_reduce", tensor, op);
  if (backend == Backend::kMpi) return detail::mpi_all_reduce(group.mpi_comm(), tensor, op);
#ifdef CORD_WITH_CUDA
  detail::nccl_all_reduce(group.nccl_comm(), tensor, op);
#else
  no_nccl();
#endif
}

struct Work::State {
  ProcessGroup group;  // whose blocked time the wait adds to
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Request request = MPI_REQUEST_NULL;
  at::Tensor tensor;
  ReduceOp op = ReduceOp::kSum;
  bool done = false;

  void finish() {
    detail::mpi_finish_all_reduce(comm, tensor, op);
    tensor = at::Tensor();
    done = true;
  }
};

bool Work::test() {
  if (!state_ || state_->done) return true;
  int flag = 0;
  CORD_MPI_CHECK(MPI_Test(&state_->request, &flag, MPI_STATUS_IGNORE));
  if (flag != 0) state_->finish();
  return flag != 0;
}

void Work::wait() {
  if (!state_ || state_->done) return;
  const BlockedTimer blocked(state_->group, "all_reduce (async wait)");
  CORD_MPI_CHECK(MPI_Wait(&state_->request, MPI_STATUS_IGNORE));
  state_->finish();
}

Work all_reduce_async(const ProcessGroup& group, const at::Tensor& tensor, ReduceOp op) {
  mark_progress();  // starting does not block; Work::wait() is the collective the watchdog sees
  const Backend backend = check_tensor(group, "all_reduce_async", tensor);
  check_op(group, "all_reduce_async", tensor, op);
  if (backend == Backend::kNccl) {
#ifdef CORD_WITH_CUDA
    detail::nccl_all_reduce(group.nccl_comm(), tensor, op);  // stream-ordered: complete for the host
    return Work();
#else
    no_nccl();
#endif
  }
  auto state = std::make_shared<Work::State>(Work::State{group});
  state->comm = group.mpi_comm();
  state->tensor = tensor;
  state->op = op;
  state->request = detail::mpi_start_all_reduce(group.mpi_comm(), tensor, op);
  return Work(std::move(state));
}

void all_gather(const ProcessGroup& group, const at::Tensor& input, const at::Tensor& output) {
  const BlockedTimer blocked(group, "all_gather");
  const Backend backend = check_pair(group, "all_gather", input, output);
  if (output.numel() != input.numel() * group.size()) {
    reject(group, "all_gather", "output numel " + std::to_string(output.numel()) + " != group size " +
                                    std::to_string(group.size()) + " * input numel " +
                                    std::to_string(input.numel()));
  }
  if (backend == Backend::kMpi) return detail::mpi_all_gather(group.mpi_comm(), input, output);
#ifdef CORD_WITH_CUDA
  detail::nccl_all_gather(group.nccl_comm(), input, output);
#else
  no_nccl();
#endif
}

void reduce_scatter(const ProcessGroup& group, const at::Tensor& input, const at::Tensor& output,
                    ReduceOp op) {
  const BlockedTimer blocked(group, "reduce_scatter");
  const Backend backend = check_pair(group, "reduce_scatter", input, output);
  check_op(group, "reduce_scatter", input, op);
  if (input.numel() != output.numel() * group.size()) {
    reject(group, "reduce_scatter", "input numel " + std::to_string(input.numel()) + " != group size " +
                                        std::to_string(group.size()) + " * output numel " +
                                        std::to_string(output.numel()));
  }
  if (backend == Backend::kMpi) return detail::mpi_reduce_scatter(group.mpi_comm(), input, output, op);
#ifdef CORD_WITH_CUDA
  detail::nccl_reduce_scatter(group.nccl_comm(), input, output, op);
#else
  no_nccl();
#endif
}

void broadcast(const ProcessGroup& group, const at::Tensor& tensor, int root) {
  const BlockedTimer blocked(group, "broadcast");
  const Backend backend = check_tensor(group, "broadcast", tensor);
  if (root < 0 || root >= group.size()) {
    reject(group, "broadcast", "root " + std::to_string(root) + " outside group of size " +
                                   std::to_string(group.size()));
  }
  if (backend == Backend::kMpi) return detail::mpi_broadcast(group.mpi_comm(), tensor, root);
#ifdef CORD_WITH_CUDA
  detail::nccl_broadcast(group.nccl_comm(), tensor, root);
#else
  no_nccl();
#endif
}

void barrier(const ProcessGroup& group) {
  const BlockedTimer blocked(group, "barrier");
#ifdef CORD_WITH_CUDA
  if (group.has_nccl()) detail::cuda_synchronize_current_stream();
#endif
  CORD_MPI_CHECK(MPI_Barrier(group.mpi_comm()));
}

std::vector<std::string> gather_strings(const ProcessGroup& group, const std::string& mine, int root) {
  const CollectiveProgress progress("gather_strings", group.name());
  const int length = static_cast<int>(mine.size());
  const bool is_root = group.rank() == root;
  std::vector<int> lengths(is_root ? static_cast<std::size_t>(group.size()) : 0);
  CORD_MPI_CHECK(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, root, group.mpi_comm()));
  std::vector<int> offsets(lengths.size());
  int total = 0;
  for (std::size_t i = 0; i < lengths.size(); ++i) offsets[i] = total, total += lengths[i];
  std::string all(static_cast<std::size_t>(total), '\0');
  CORD_MPI_CHECK(MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(),
                             MPI_CHAR, root, group.mpi_comm()));
  std::vector<std::string> result;
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    result.push_back(all.substr(static_cast<std::size_t>(offsets[i]), static_cast<std::size_t>(lengths[i])));
  }
  return result;
}

std::string broadcast_string(const ProcessGroup& group, const std::string& text, int root) {
  const CollectiveProgress progress("broadcast_string", group.name());
  int length = static_cast<int>(text.size());
  CORD_MPI_CHECK(MPI_Bcast(&length, 1, MPI_INT, root, group.mpi_comm()));
  std::string result = group.rank() == root ? text : std::string(static_cast<std::size_t>(length), '\0');
  CORD_MPI_CHECK(MPI_Bcast(result.data(), length, MPI_CHAR, root, group.mpi_comm()));
  return result;
}


std::string nccl_version() {
#ifdef CORD_WITH_CUDA
  return detail::nccl_library_version();
#else
  return "";
#endif
}

}  // namespace cord::comm
