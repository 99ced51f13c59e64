#pragma once
// Private to cord_comm: the two transport backends behind collectives.hpp.
// collectives.cpp validates arguments (dtype, device, contiguity, sizes) once and then
// calls exactly one of these; the backends assume valid arguments.
#include <mpi.h>

#include <string>

#include <ATen/core/Tensor.h>

#include "cord/comm/collectives.hpp"

struct ncclComm;

namespace cord::comm::detail {

// MPI, CPU tensors. MPI counts are int: larger tensors are an Error.
void mpi_all_reduce(MPI_Comm comm, const at::Tensor& tensor, ReduceOp op);
// Starts MPI_Iallreduce; the caller finishes with mpi_finish_all_reduce after completion.
MPI_Request mpi_start_all_reduce(MPI_Comm comm, const at::Tensor& tensor, ReduceOp op);
void mpi_finish_all_reduce(MPI_Comm comm, const at::Tensor& tensor, ReduceOp op);
void mpi_all_gather(MPI_Comm comm, const at::Tensor& input, const at::Tensor& output);
void mpi_reduce_scatter(MPI_Comm comm, const at::Tensor& input, const at::Tensor& output, ReduceOp op);
void mpi_broadcast(MPI_Comm comm, const at::Tensor& tensor, int root);

#ifdef CORD_WITH_CUDA
// NCCL, CUDA tensors, on the current CUDA stream.
ncclComm* nccl_create(MPI_Comm comm);  // collective over comm
void nccl_destroy(ncclComm* comm);
void nccl_all_reduce(ncclComm* comm, const at::Tensor& tensor, ReduceOp op);
void nccl_all_gather(ncclComm* comm, const at::Tensor& input, const at::Tensor& output);
void nccl_reduce_scatter(ncclComm* comm, const at::Tensor& input, const at::Tensor& output, ReduceOp op);
void nccl_broadcast(ncclComm* comm, const at::Tensor& tensor, int root);
void cuda_synchronize_current_stream();
// For the hang watchdog's thread: "" or NCCL's text of the communicator's asynchronous
// error (ncclCommGetAsyncError), and ncclCommAbort (unblocks kernels waiting on peers).
std::string nccl_async_error(ncclComm* comm);
void nccl_abort(ncclComm* comm);
std::string nccl_library_version();
#endif

}  // namespace cord::comm::detail
