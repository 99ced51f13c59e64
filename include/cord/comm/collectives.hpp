#pragma once
// Collectives on tensors over a ProcessGroup. CPU tensors go through MPI, CUDA tensors
// through the group's NCCL communicator (on the current CUDA stream). Supported dtypes:
// float32, float64, bfloat16, int32, int64. Inputs must be contiguous and on the device
// the backend serves; anything else is an Error, never a silent copy.
//
// All calls are collective: every rank of the group calls them in the same order with
// tensors of the same dtype and numel. Results are written in place (into `tensor` or
// `output`); the Tensor handles are const because the tensors' data, not the handles, change.
#include <memory>
#include <string>
#include <vector>

namespace at {
class Tensor;
}  // namespace at

namespace cord::comm {

class ProcessGroup;

enum class ReduceOp { kSum, kAvg, kMax };  // kAvg: floating-point dtypes only

const char* to_string(ReduceOp op);

// tensor <- reduce over the group of every rank's tensor.
void all_reduce(const ProcessGroup& group, const at::Tensor& tensor, ReduceOp op);

// A collective in flight. wait() completes it (for MPI, also the division of kAvg);
// test() lets MPI progress it without blocking. CUDA collectives are ordered on the
// stream, so they count as complete for the host once enqueued.
class Work {
 public:
  Work() = default;  // already complete
  bool test();       // true once complete
  void wait();

  struct State;
  explicit Work(std::shared_ptr<State> state) : state_(std::move(state)) {}

 private:
  std::shared_ptr<State> state_;
};

// Non-blocking all_reduce: `tensor` must not be read or written until wait() returns.
Work all_reduce_async(const ProcessGroup& group, const at::Tensor& tensor, ReduceOp op);

// output <- concatenation of every rank's input in group-rank order.
// output.numel() == group.size() * input.numel(); shapes are otherwise free
// (e.g. input [n, d] -> output [size * n, d], or [size, n, d]).
void all_gather(const ProcessGroup& group, const at::Tensor& input, const at::Tensor& output);

// output <- block `group.rank()` of the reduction of every rank's input, where the input
// is split into group.size() equal contiguous blocks. input.numel() == size * output.numel().
void reduce_scatter(const ProcessGroup& group, const at::Tensor& input, const at::Tensor& output,
                    ReduceOp op);

// tensor <- root's tensor (root is a group rank).
void broadcast(const ProcessGroup& group, const at::Tensor& tensor, int root);

// Returns when every rank of the group has entered it (also drains the CUDA stream
// when the group has NCCL, so device work before it is complete).
void barrier(const ProcessGroup& group);

// Object collective: rank `root` receives every rank's string in group-rank order;
// other ranks receive an empty vector.
std::vector<std::string> gather_strings(const ProcessGroup& group, const std::string& mine, int root);

// Object collective: every rank returns rank `root`'s `text`.
std::string broadcast_string(const ProcessGroup& group, const std::string& text, int root);

// (The time each rank spends blocked in these collectives is counted per group:
// ProcessGroup::blocked_seconds.)

// Version of the NCCL library linked in ("2.28.9"), or "" in a build without CUDA.
std::string nccl_version();

}  // namespace cord::comm
