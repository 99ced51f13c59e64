#include "cord/comm/process_group.hpp"

#include <atomic>

#include "backends.hpp"
#include "cord/comm/mpi_check.hpp"
#include "cord/comm/world.hpp"
#include "cord/core/error.hpp"

namespace cord::comm {

struct ProcessGroup::State {
  std::string name;
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  ncclComm* nccl = nullptr;
  std::atomic<int64_t> blocked_ns{0};  // time blocked in collectives on this group

  State(std::string group_name, MPI_Comm owned) : name(std::move(group_name)), comm(owned) {
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    CORD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    CORD_MPI_CHECK(MPI_Comm_size(comm, &size));
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
#ifdef CORD_WITH_CUDA
    if (nccl != nullptr) detail::nccl_destroy(nccl);
#endif
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
};

ProcessGroup ProcessGroup::world(const World& world) {
  MPI_Comm dup = MPI_COMM_NULL;
  CORD_MPI_CHECK(MPI_Comm_dup(world.comm(), &dup));
  return ProcessGroup(std::make_shared<State>("world", dup));
}

ProcessGroup ProcessGroup::split(int color, int key, const std::string& name) const {
  MPI_Comm child = MPI_COMM_NULL;
  CORD_MPI_CHECK(MPI_Comm_split(state_->comm, color, key, &child));
  return ProcessGroup(std::make_shared<State>(name, child));
}

ProcessGroup ProcessGroup::duplicate(const std::string& name) const {
  MPI_Comm dup = MPI_COMM_NULL;
  CORD_MPI_CHECK(MPI_Comm_dup(state_->comm, &dup));
  return ProcessGroup(std::make_shared<State>(name, dup));
}

const std::string& ProcessGroup::name() const { return state_->name; }
int ProcessGroup::rank() const { return state_->rank; }
int ProcessGroup::size() const { return state_->size; }
MPI_Comm ProcessGroup::mpi_comm() const { return state_->comm; }

std::vector<int> ProcessGroup::world_ranks() const {
  MPI_Group mine = MPI_GROUP_NULL;
  MPI_Group world = MPI_GROUP_NULL;
  CORD_MPI_CHECK(MPI_Comm_group(state_->comm, &mine));
  CORD_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world));
  std::vector<int> group_ranks(static_cast<std::size_t>(state_->size));
  std::vector<int> result(group_ranks.size());
  for (int i = 0; i < state_->size; ++i) group_ranks[static_cast<std::size_t>(i)] = i;
  CORD_MPI_CHECK(MPI_Group_translate_ranks(mine, state_->size, group_ranks.data(), world, result.data()));
  MPI_Group_free(&mine);
  MPI_Group_free(&world);
  return result;
}

void ProcessGroup::init_nccl() {
#ifdef CORD_WITH_CUDA
  if (state_->nccl == nullptr) state_->nccl = detail::nccl_create(state_->comm);
#else
  throw DeviceError("process group '" + state_->name + "' needs NCCL but cord was built without CUDA (" +
                    process_identity() + ")");
#endif
}

bool ProcessGroup::has_nccl() const { return state_->nccl != nullptr; }
ncclComm* ProcessGroup::nccl_comm() const { return state_->nccl; }

double ProcessGroup::blocked_seconds() const { return static_cast<double>(state_->blocked_ns.load()) * 1e-9; }

void ProcessGroup::add_blocked_nanoseconds(int64_t nanoseconds) const { state_->blocked_ns += nanoseconds; }

ProcessGroups make_process_groups(const World& world, const ParallelDims& dims, bool with_nccl) {
  CORD_CHECK(dims.world_size() == world.size(),
             "ParallelDims for world size " + std::to_string(dims.world_size()) + " used in a world of " +
                 std::to_string(world.size()));
  ProcessGroup world_group = ProcessGroup::world(world);
  const RankCoords me = dims.coords_of(world.rank());
  // tp: same dp_rank, ordered by tp_rank. dp: same tp_rank, ordered by dp_rank.
  ProcessGroup tp = world_group.split(me.dp_rank, me.tp_rank, "tp");
  ProcessGroup dp = world_group.split(me.tp_rank, me.dp_rank, "dp");
  if (with_nccl) {
    world_group.init_nccl();
    dp.init_nccl();
    tp.init_nccl();
  }
  return ProcessGroups{dims, world_group, dp, tp};
}

ProcessGroups duplicate_process_groups(const ProcessGroups& groups, const std::string& name_suffix) {
  // Every rank duplicates in the same order (world, dp, tp): MPI_Comm_dup is collective.
  ProcessGroup world = groups.world.duplicate("world (" + name_suffix + ")");
  ProcessGroup dp = groups.dp.duplicate("dp (" + name_suffix + ")");
  ProcessGroup tp = groups.tp.duplicate("tp (" + name_suffix + ")");
  return ProcessGroups{groups.dims, world, dp, tp};
}

}  // namespace cord::comm
