#pragma once
// ProcessGroup: a set of ranks that communicate together — an owned MPI communicator
// and, on CUDA runs, an NCCL communicator over the same ranks. A cheap value: copies
// share the communicators, which are freed with the last copy (before MPI_Finalize,
// as long as the World outlives every group, which main guarantees by declaring it first).
//
// ProcessGroups bundles the world, dp and tp groups of one ParallelDims; they are passed
// explicitly to whatever communicates. There is no global process-group state.
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cord/comm/parallel_dims.hpp"

struct ncclComm;  // NCCL's opaque communicator (ncclComm_t = ncclComm*)

namespace cord::comm {

class World;

class ProcessGroup {
 public:
  // A duplicate of MPI_COMM_WORLD (collective over the world).
  static ProcessGroup world(const World& world);

  // Collective over this group: ranks passing the same `color` form a new group,
  // ordered by `key` (as MPI_Comm_split).
  ProcessGroup split(int color, int key, const std::string& name) const;

  // Collective over this group: the same ranks on a new MPI communicator (no NCCL), so
  // that a helper thread's collectives never interleave with this group's traffic.
  ProcessGroup duplicate(const std::string& name) const;

  const std::string& name() const;
  int rank() const;
  int size() const;
  MPI_Comm mpi_comm() const;

  // The members' world ranks in group-rank order, read from the communicator itself.
  std::vector<int> world_ranks() const;

  // Collective over the group: creates the NCCL communicator on the current CUDA device
  // (group rank 0 makes the unique id, MPI broadcasts it). Throws CommError naming the
  // rank and host on failure, DeviceError in a build without CUDA.
  void init_nccl();
  bool has_nccl() const;
  ncclComm* nccl_comm() const;  // nullptr without init_nccl()

  // Wall seconds this rank has spent blocked in the tensor collectives on this group
  // (collectives.hpp: all_reduce, Work::wait, all_gather, reduce_scatter, broadcast,
  // barrier), shared by every copy of the group: the communication it could not hide,
  // waiting for slower ranks included. CUDA collectives are stream-ordered, so on a GPU
  // this counts the host's enqueue time, not the transfer.
  double blocked_seconds() const;
  // The collectives add their blocked time here.
  void add_blocked_nanoseconds(int64_t nanoseconds) const;

 private:
  struct State;
  explicit ProcessGroup(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

struct ProcessGroups {
  ParallelDims dims;
  ProcessGroup world;
  ProcessGroup dp;  // same tp_rank, all dp ranks: gradient averaging
  ProcessGroup tp;  // same dp_rank, all tp ranks: tensor-parallel layers
};

// Collective over the world: builds the dp and tp groups by communicator splits,
// and their NCCL communicators when `with_nccl` (after the CUDA device is selected).
ProcessGroups make_process_groups(const World& world, const ParallelDims& dims, bool with_nccl);

// Collective over the world: the same three groups on duplicated MPI communicators (CPU
// tensors only), named "<name> (NAME_SUFFIX)". For a helper thread such as the
// asynchronous checkpoint writer: MPI_THREAD_MULTIPLE allows concurrent calls on
// different communicators, never on one.
ProcessGroups duplicate_process_groups(const ProcessGroups& groups, const std::string& name_suffix);

}  // namespace cord::comm
