#include "cord/comm/parallel_dims.hpp"

#include <string>

#include "cord/core/error.hpp"

namespace cord::comm {

ParallelDims ParallelDims::resolve(int dp, int tp, int world_size) {
  const std::string world = std::to_string(world_size);
  if (tp < 1) throw UsageError("parallel.tp=" + std::to_string(tp) + " must be >= 1");
  if (dp < 0) throw UsageError("parallel.dp=" + std::to_string(dp) + " must be >= 0 (0 = world size / tp)");
  if (world_size % tp != 0) {
    throw UsageError("parallel.tp=" + std::to_string(tp) + " does not divide world size " + world);
  }
  if (dp == 0) dp = world_size / tp;
  if (dp * tp != world_size) {
    throw UsageError("parallel.dp=" + std::to_string(dp) + " * parallel.tp=" + std::to_string(tp) +
                     " = " + std::to_string(dp * tp) + " != world size " + world);
  }
  return ParallelDims(dp, tp);
}

RankCoords ParallelDims::coords_of(int world_rank) const {
  CORD_CHECK(world_rank >= 0 && world_rank < world_size(),
             "world rank " + std::to_string(world_rank) + " outside world size " + std::to_string(world_size()));
  return {world_rank / tp_, world_rank % tp_};
}

int ParallelDims::world_rank_of(RankCoords coords) const {
  CORD_CHECK(coords.dp_rank >= 0 && coords.dp_rank < dp_ && coords.tp_rank >= 0 && coords.tp_rank < tp_,
             "rank coordinates (dp " + std::to_string(coords.dp_rank) + ", tp " +
                 std::to_string(coords.tp_rank) + ") outside dp=" + std::to_string(dp_) +
                 " tp=" + std::to_string(tp_));
  return coords.dp_rank * tp_ + coords.tp_rank;
}

std::vector<int> ParallelDims::tp_group_of(int world_rank) const {
  const RankCoords me = coords_of(world_rank);
  std::vector<int> group;
  for (int t = 0; t < tp_; ++t) group.push_back(world_rank_of({me.dp_rank, t}));
  return group;
}

std::vector<int> ParallelDims::dp_group_of(int world_rank) const {
  const RankCoords me = coords_of(world_rank);
  std::vector<int> group;
  for (int d = 0; d < dp_; ++d) group.push_back(world_rank_of({d, me.tp_rank}));
  return group;
}

std::string format_ranks(const std::vector<int>& ranks) {
  std::string text = "[";
  for (std::size_t i = 0; i < ranks.size(); ++i) text += (i == 0 ? "" : ", ") + std::to_string(ranks[i]);
  return text + "]";
}

}  // namespace cord::comm
