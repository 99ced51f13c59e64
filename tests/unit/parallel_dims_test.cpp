// Layout arithmetic: resolution against the world size, its error messages, and the
// rank <-> (dp_rank, tp_rank) mapping with its groups.
#include <gtest/gtest.h>

#include "cord/comm/parallel_dims.hpp"
#include "cord/core/error.hpp"

namespace cord::comm {
namespace {

std::string resolve_error(int dp, int tp, int world) {
  try {
    ParallelDims::resolve(dp, tp, world);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ParallelDims, DpZeroMeansWorldOverTp) {
  const ParallelDims dims = ParallelDims::resolve(0, 2, 8);
  EXPECT_EQ(dims.dp(), 4);
  EXPECT_EQ(dims.tp(), 2);
  EXPECT_EQ(dims.world_size(), 8);
}

TEST(ParallelDims, ExplicitDegreesThatFit) {
  const ParallelDims dims = ParallelDims::resolve(2, 2, 4);
  EXPECT_EQ(dims.dp(), 2);
  EXPECT_EQ(dims.tp(), 2);
}

TEST(ParallelDims, ErrorMessagesAreExact) {
  EXPECT_EQ(resolve_error(0, 3, 4), "parallel.tp=3 does not divide world size 4");
  EXPECT_EQ(resolve_error(3, 1, 4), "parallel.dp=3 * parallel.tp=1 = 3 != world size 4");
  EXPECT_EQ(resolve_error(1, 2, 4), "parallel.dp=1 * parallel.tp=2 = 2 != world size 4");
  EXPECT_EQ(resolve_error(0, 0, 4), "parallel.tp=0 must be >= 1");
  EXPECT_EQ(resolve_error(-1, 1, 4), "parallel.dp=-1 must be >= 0 (0 = world size / tp)");
}

TEST(ParallelDims, TpIsInnermost) {
  const ParallelDims dims = ParallelDims::resolve(0, 2, 4);
  EXPECT_EQ(dims.coords_of(0).dp_rank, 0);
  EXPECT_EQ(dims.coords_of(1).tp_rank, 1);
  EXPECT_EQ(dims.coords_of(2).dp_rank, 1);
  EXPECT_EQ(dims.coords_of(2).tp_rank, 0);
  EXPECT_EQ(dims.coords_of(3).dp_rank, 1);
  EXPECT_EQ(dims.coords_of(3).tp_rank, 1);
}

TEST(ParallelDims, CoordsRoundTripForEveryLayoutOf12) {
  for (int tp : {1, 2, 3, 4, 6, 12}) {
    const ParallelDims dims = ParallelDims::resolve(0, tp, 12);
    for (int rank = 0; rank < 12; ++rank) EXPECT_EQ(dims.world_rank_of(dims.coords_of(rank)), rank);
  }
}

TEST(ParallelDims, GroupsForTp2Dp2) {
  const ParallelDims dims = ParallelDims::resolve(0, 2, 4);
  EXPECT_EQ(dims.tp_group_of(0), (std::vector<int>{0, 1}));
  EXPECT_EQ(dims.tp_group_of(3), (std::vector<int>{2, 3}));
  EXPECT_EQ(dims.dp_group_of(0), (std::vector<int>{0, 2}));
  EXPECT_EQ(dims.dp_group_of(3), (std::vector<int>{1, 3}));
}

TEST(ParallelDims, GroupsForPureLayouts) {
  const ParallelDims tp4 = ParallelDims::resolve(0, 4, 4);
  EXPECT_EQ(tp4.tp_group_of(2), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(tp4.dp_group_of(2), (std::vector<int>{2}));
  const ParallelDims dp4 = ParallelDims::resolve(0, 1, 4);
  EXPECT_EQ(dp4.dp_group_of(1), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(dp4.tp_group_of(1), (std::vector<int>{1}));
}

TEST(ParallelDims, OutOfRangeRankIsAnError) {
  const ParallelDims dims = ParallelDims::resolve(0, 2, 4);
  EXPECT_THROW(dims.coords_of(4), Error);
  EXPECT_THROW(dims.world_rank_of({2, 0}), Error);
}

TEST(ParallelDims, FormatRanks) {
  EXPECT_EQ(format_ranks({}), "[]");
  EXPECT_EQ(format_ranks({0, 2}), "[0, 2]");
}

}  // namespace
}  // namespace cord::comm
