// NCCL backend for CUDA tensors, on the current CUDA stream of the tensor's device.
// Arguments were validated by collectives.cpp. Compiled only with CORD_WITH_CUDA.
#include <nccl.h>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>

#include "backends.hpp"
#include "cord/comm/mpi_check.hpp"
#include "cord/core/error.hpp"

// CORD_NCCL_CHECK(call): throws CommError with NCCL's error text, file:line and rank.
#define CORD_NCCL_CHECK(call)                                                                \
  do {                                                                                       \
    const ncclResult_t cord_nccl_status = (call);                                            \
    if (cord_nccl_status != ncclSuccess) {                                                   \
      ::cord::raise_library_error(::cord::ExitCode::kCommError, "NCCL", #call,               \
                                  ncclGetErrorString(cord_nccl_status), __FILE__, __LINE__); \
    }                                                                                        \
  } while (0)

namespace cord::comm::detail {
namespace {

ncclDataType_t nccl_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    default: throw Error(std::string("no NCCL datatype for ") + at::toString(type));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
  }
  return ncclSum;
}

cudaStream_t stream_of(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

std::size_t count_of(const at::Tensor& t) { return static_cast<std::size_t>(t.numel()); }

}  // namespace

ncclComm* nccl_create(MPI_Comm comm) {
  int rank = 0;
  int size = 0;
  CORD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  CORD_MPI_CHECK(MPI_Comm_size(comm, &size));
  ncclUniqueId id{};
  if (rank == 0) CORD_NCCL_CHECK(ncclGetUniqueId(&id));
  CORD_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm));
  ncclComm_t created = nullptr;
  CORD_NCCL_CHECK(ncclCommInitRank(&created, size, id, rank));
  return created;
}

void nccl_destroy(ncclComm* comm) { ncclCommDestroy(comm); }

void nccl_all_reduce(ncclComm* comm, const at::Tensor& tensor, ReduceOp op) {
  CORD_NCCL_CHECK(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), count_of(tensor),
                                nccl_type(tensor.scalar_type()), nccl_op(op), comm, stream_of(tensor)));
}

void nccl_all_gather(ncclComm* comm, const at::Tensor& input, const at::Tensor& output) {
  CORD_NCCL_CHECK(ncclAllGather(input.data_ptr(), output.data_ptr(), count_of(input),
                                nccl_type(input.scalar_type()), comm, stream_of(input)));
}

void nccl_reduce_scatter(ncclComm* comm, const at::Tensor& input, const at::Tensor& output, ReduceOp op) {
  CORD_NCCL_CHECK(ncclReduceScatter(input.data_ptr(), output.data_ptr(), count_of(output),
                                    nccl_type(input.scalar_type()), nccl_op(op), comm, stream_of(input)));
}

void nccl_broadcast(ncclComm* comm, const at::Tensor& tensor, int root) {
  CORD_NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), count_of(tensor),
                                nccl_type(tensor.scalar_type()), root, comm, stream_of(tensor)));
}

void cuda_synchronize_current_stream() { c10::cuda::getCurrentCUDAStream().synchronize(); }

std::string nccl_library_version() {
  int version = 0;
  if (ncclGetVersion(&version) != ncclSuccess) return "unknown";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return std::to_string(version / 10000) + "." + std::to_string((version % 10000) / 100) + "." +
         std::to_string(version % 100);
}

}  // namespace cord::comm::detail

namespace cord::comm::detail {

std::string nccl_async_error(ncclComm* comm) {
  ncclResult_t async_status = ncclSuccess;
  const ncclResult_t query = ncclCommGetAsyncError(comm, &async_status);
  if (query != ncclSuccess) return std::string("ncclCommGetAsyncError failed: ") + ncclGetErrorString(query);
  if (async_status == ncclSuccess || async_status == ncclInProgress) return "";
  return ncclGetErrorString(async_status);
}

void nccl_abort(ncclComm* comm) { (void)ncclCommAbort(comm); }

}  // namespace cord::comm::detail
