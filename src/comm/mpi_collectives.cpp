// MPI backend for CPU tensors. Arguments were validated by collectives.cpp.
// bfloat16 has no MPI datatype: it travels as MPI_UINT16_T (its bit pattern) and is
// reduced by user-defined ops that add/max in float and round back to bfloat16,
// as NCCL does, so CPU and GPU runs round the same way.
#include <climits>

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>

#include "backends.hpp"
#include "cord/comm/mpi_check.hpp"
#include "cord/core/error.hpp"

namespace cord::comm::detail {
namespace {

void bf16_sum(void* in, void* inout, int* length, MPI_Datatype* /*type*/) {
  const auto* a = static_cast<const c10::BFloat16*>(in);
  auto* b = static_cast<c10::BFloat16*>(inout);
  for (int i = 0; i < *length; ++i) b[i] = c10::BFloat16(static_cast<float>(a[i]) + static_cast<float>(b[i]));
}

void bf16_max(void* in, void* inout, int* length, MPI_Datatype* /*type*/) {
  const auto* a = static_cast<const c10::BFloat16*>(in);
  auto* b = static_cast<c10::BFloat16*>(inout);
  for (int i = 0; i < *length; ++i) {
    if (static_cast<float>(a[i]) > static_cast<float>(b[i])) b[i] = a[i];
  }
}

struct Bf16Ops {
  MPI_Op sum = MPI_OP_NULL;
  MPI_Op max = MPI_OP_NULL;
};

// Created on first use (after MPI_Init) and released by MPI_Finalize.
const Bf16Ops& bf16_ops() {
  static const Bf16Ops ops = [] {
    Bf16Ops created;
    CORD_MPI_CHECK(MPI_Op_create(&bf16_sum, /*commute=*/1, &created.sum));
    CORD_MPI_CHECK(MPI_Op_create(&bf16_max, /*commute=*/1, &created.max));
    return created;
  }();
  return ops;
}

MPI_Datatype mpi_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kInt: return MPI_INT32_T;
    case at::kLong: return MPI_INT64_T;
    case at::kBFloat16: return MPI_UINT16_T;
    default: throw Error(std::string("no MPI datatype for ") + at::toString(type));
  }
}

// Sum and max; avg is a sum followed by a division by the group size.
MPI_Op mpi_op(ReduceOp op, at::ScalarType type) {
  const bool max = op == ReduceOp::kMax;
  if (type == at::kBFloat16) return max ? bf16_ops().max : bf16_ops().sum;
  return max ? MPI_MAX : MPI_SUM;
}

int mpi_count(const at::Tensor& t) {
  if (t.numel() > INT_MAX) {
    throw Error("tensor of " + std::to_string(t.numel()) + " elements exceeds one MPI call's count (" +
                std::to_string(INT_MAX) + "); split it (" + process_identity() + ")");
  }
  return static_cast<int>(t.numel());
}

int comm_size(MPI_Comm comm) {
  int size = 0;
  CORD_MPI_CHECK(MPI_Comm_size(comm, &size));
  return size;
}

void finish_average(MPI_Comm comm, const at::Tensor& t, ReduceOp op) {
  if (op == ReduceOp::kAvg) t.div_(comm_size(comm));
}

}  // namespace

void mpi_all_reduce(MPI_Comm comm, const at::Tensor& tensor, ReduceOp op) {
  const at::ScalarType type = tensor.scalar_type();
  CORD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), mpi_count(tensor), mpi_type(type),
                               mpi_op(op, type), comm));
  finish_average(comm, tensor, op);
}

MPI_Request mpi_start_all_reduce(MPI_Comm comm, const at::Tensor& tensor, ReduceOp op) {
  const at::ScalarType type = tensor.scalar_type();
  MPI_Request request = MPI_REQUEST_NULL;
  CORD_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(), mpi_count(tensor), mpi_type(type),
                                mpi_op(op, type), comm, &request));
  return request;
}

void mpi_finish_all_reduce(MPI_Comm comm, const at::Tensor& tensor, ReduceOp op) {
  finish_average(comm, tensor, op);
}

void mpi_all_gather(MPI_Comm comm, const at::Tensor& input, const at::Tensor& output) {
  const MPI_Datatype type = mpi_type(input.scalar_type());
  mpi_count(output);
  CORD_MPI_CHECK(MPI_Allgather(input.data_ptr(), mpi_count(input), type, output.data_ptr(),
                               mpi_count(input), type, comm));
}

void mpi_reduce_scatter(MPI_Comm comm, const at::Tensor& input, const at::Tensor& output, ReduceOp op) {
  const at::ScalarType type = input.scalar_type();
  mpi_count(input);
  CORD_MPI_CHECK(MPI_Reduce_scatter_block(input.data_ptr(), output.data_ptr(), mpi_count(output),
                                          mpi_type(type), mpi_op(op, type), comm));
  finish_average(comm, output, op);
}

void mpi_broadcast(MPI_Comm comm, const at::Tensor& tensor, int root) {
  CORD_MPI_CHECK(MPI_Bcast(tensor.data_ptr(), mpi_count(tensor), mpi_type(tensor.scalar_type()), root, comm));
}

}  // namespace cord::comm::detail
