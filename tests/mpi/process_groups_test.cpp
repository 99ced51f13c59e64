// Group membership for every dp × tp layout of the world (2 ranks: dp2, tp2; 4 ranks:
// dp4, dp2×tp2, tp4), read from the communicators themselves, and collectives inside
// the sub-groups reducing over exactly their members.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "cord/comm/collectives.hpp"
#include "cord/comm/process_group.hpp"
#include "mpi_test_world.hpp"

namespace cord::comm {
namespace {

std::vector<int> divisors(int n) {
  std::vector<int> result;
  for (int d = 1; d <= n; ++d) {
    if (n % d == 0) result.push_back(d);
  }
  return result;
}

TEST(ProcessGroups, MembershipMatchesLayoutForEveryTp) {
  const World& world = testing::world();
  for (int tp : divisors(world.size())) {
    SCOPED_TRACE("tp=" + std::to_string(tp));
    const ParallelDims dims = ParallelDims::resolve(0, tp, world.size());
    const ProcessGroups groups = make_process_groups(world, dims, /*with_nccl=*/false);
    const RankCoords me = dims.coords_of(world.rank());
    EXPECT_EQ(groups.tp.size(), tp);
    EXPECT_EQ(groups.dp.size(), world.size() / tp);
    EXPECT_EQ(groups.tp.rank(), me.tp_rank);
    EXPECT_EQ(groups.dp.rank(), me.dp_rank);
    EXPECT_EQ(groups.tp.world_ranks(), dims.tp_group_of(world.rank()));
    EXPECT_EQ(groups.dp.world_ranks(), dims.dp_group_of(world.rank()));
    EXPECT_EQ(groups.world.size(), world.size());
    EXPECT_FALSE(groups.tp.has_nccl());
  }
}

TEST(ProcessGroups, SubGroupCollectivesReduceOverMembersOnly) {
  const World& world = testing::world();
  for (int tp : divisors(world.size())) {
    SCOPED_TRACE("tp=" + std::to_string(tp));
    const ParallelDims dims = ParallelDims::resolve(0, tp, world.size());
    const ProcessGroups groups = make_process_groups(world, dims, false);
    for (const ProcessGroup* group : {&groups.tp, &groups.dp}) {
      const at::Tensor t = torch::full({3}, static_cast<int64_t>(world.rank() + 1), torch::kLong);
      all_reduce(*group, t, ReduceOp::kSum);
      int64_t expected = 0;
      for (int member : group->world_ranks()) expected += member + 1;
      EXPECT_EQ(t[2].item<int64_t>(), expected) << group->name();

      const at::Tensor gathered = torch::empty({group->size()}, torch::kInt);
      all_gather(*group, torch::full({1}, world.rank(), torch::kInt), gathered);
      std::vector<int> members(gathered.data_ptr<int>(), gathered.data_ptr<int>() + group->size());
      EXPECT_EQ(members, group->world_ranks()) << group->name();
    }
  }
}

}  // namespace
}  // namespace cord::comm
