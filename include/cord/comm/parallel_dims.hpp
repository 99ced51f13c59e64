#pragma once
// ParallelDims: the dp × tp arrangement of the world's ranks, and its arithmetic.
//
//   world rank r  <->  (dp_rank, tp_rank) with r = dp_rank * tp + tp_rank
//
// tp is the innermost dimension: the tp peers of a rank are consecutive world ranks
// (one node when ranks are placed by node), the dp peers are tp apart.
// Example, world 4, tp 2:  tp groups {0,1} {2,3};  dp groups {0,2} {1,3}.
#include <string>
#include <vector>

namespace cord::comm {

struct RankCoords {
  int dp_rank = 0;
  int tp_rank = 0;
};

class ParallelDims {
 public:
  // Resolves the configured degrees against the world size (dp = 0 means world / tp).
  // Throws UsageError, e.g. "parallel.tp=3 does not divide world size 4".
  static ParallelDims resolve(int dp, int tp, int world_size);

  int dp() const { return dp_; }
  int tp() const { return tp_; }
  int world_size() const { return dp_ * tp_; }

  RankCoords coords_of(int world_rank) const;
  int world_rank_of(RankCoords coords) const;
  // World ranks of the tp group / dp group that `world_rank` belongs to, in group-rank order.
  std::vector<int> tp_group_of(int world_rank) const;
  std::vector<int> dp_group_of(int world_rank) const;

 private:
  ParallelDims(int dp, int tp) : dp_(dp), tp_(tp) {}
  int dp_;
  int tp_;
};

// "[0, 2]"
std::string format_ranks(const std::vector<int>& ranks);

}  // namespace cord::comm
