// Every collective and dtype against analytic values, on the world group and on
// sub-groups, plus the argument errors. Runs under mpiexec -n 2 and -n 4.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <torch/torch.h>

#include "cord/comm/agree.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/core/error.hpp"
#include "mpi_test_world.hpp"

namespace cord::comm {
namespace {

const std::vector<at::ScalarType> kAllDtypes = {at::kFloat, at::kDouble, at::kBFloat16, at::kInt, at::kLong};
const std::vector<at::ScalarType> kFloatDtypes = {at::kFloat, at::kDouble, at::kBFloat16};

class Collectives : public ::testing::Test {
 protected:
  Collectives() : group_(ProcessGroup::world(testing::world())) {}
  int rank() const { return group_.rank(); }
  int size() const { return group_.size(); }
  // Sum over ranks r of (r + 1).
  double rank_sum() const { return size() * (size() + 1) / 2.0; }
  ProcessGroup group_;
};

// [1, 2, ..., n] * (rank + 1): small integers, exact in every dtype (bfloat16 included).
at::Tensor ramp(int64_t n, at::ScalarType dtype, int rank) {
  return (torch::arange(1, n + 1, torch::kDouble) * (rank + 1)).to(dtype);
}

void expect_equal(const at::Tensor& actual, const at::Tensor& expected) {
  ASSERT_EQ(actual.scalar_type(), expected.scalar_type());
  EXPECT_TRUE(torch::equal(actual, expected)) << "actual " << actual << "\nexpected " << expected;
}

TEST_F(Collectives, AllReduceSumEveryDtype) {
  for (at::ScalarType dtype : kAllDtypes) {
    SCOPED_TRACE(at::toString(dtype));
    const at::Tensor t = ramp(7, dtype, rank());
    all_reduce(group_, t, ReduceOp::kSum);
    expect_equal(t, (torch::arange(1, 8, torch::kDouble) * rank_sum()).to(dtype));
  }
}

TEST_F(Collectives, AllReduceMaxEveryDtype) {
  for (at::ScalarType dtype : kAllDtypes) {
    SCOPED_TRACE(at::toString(dtype));
    // Negative on odd ranks so that max is not simply the last rank's value everywhere.
    const at::Tensor t = ramp(5, dtype, rank()) * (rank() % 2 == 0 ? 1 : -1);
    all_reduce(group_, t, ReduceOp::kMax);
    const int largest_even = (size() - 1) % 2 == 0 ? size() - 1 : size() - 2;
    expect_equal(t, ramp(5, dtype, largest_even));
  }
}

TEST_F(Collectives, AllReduceAvgFloatingDtypes) {
  for (at::ScalarType dtype : kFloatDtypes) {
    SCOPED_TRACE(at::toString(dtype));
    const at::Tensor t = ramp(6, dtype, rank());
    all_reduce(group_, t, ReduceOp::kAvg);
    // mean of (r + 1) over ranks = (size + 1) / 2: 1.5 or 2.5, exact in bfloat16 for these values.
    expect_equal(t, (torch::arange(1, 7, torch::kDouble) * ((size() + 1) / 2.0)).to(dtype));
  }
}

TEST_F(Collectives, AllReduceBfloat16RoundsEachSumToBfloat16) {
  // Pairs of ranks, so that the reduction order cannot matter: 256 + 1 = 257 is not a
  // bfloat16 (spacing 2 there) and rounds to even, 256; a float accumulator would give 257.
  const ProcessGroup pair = group_.split(rank() / 2, rank(), "pair");
  if (pair.size() != 2) GTEST_SKIP() << "the last rank of an odd world has no partner";
  const at::Tensor t = torch::full({3}, pair.rank() == 0 ? 256.0 : 1.0, torch::kBFloat16);
  all_reduce(pair, t, ReduceOp::kSum);
  expect_equal(t, torch::full({3}, 256.0, torch::kBFloat16));
}

TEST_F(Collectives, AllReduceLargeBufferFloat) {
  // 4 MiB: more than one internal segment of the MPI library.
  const at::Tensor t = torch::full({1 << 20}, static_cast<float>(rank() + 1));
  all_reduce(group_, t, ReduceOp::kSum);
  EXPECT_EQ(t.min().item<float>(), static_cast<float>(rank_sum()));
  EXPECT_EQ(t.max().item<float>(), static_cast<float>(rank_sum()));
}

TEST_F(Collectives, AllReduceAsyncOverlapsSeveralBuffers) {
  // Three collectives in flight at once, completed in reverse order.
  std::vector<at::Tensor> buffers;
  std::vector<Work> works;
  for (int i = 0; i < 3; ++i) {
    buffers.push_back(ramp(1000 * (i + 1), at::kFloat, rank()));
    works.push_back(all_reduce_async(group_, buffers.back(), i == 1 ? ReduceOp::kAvg : ReduceOp::kSum));
  }
  works[0].test();  // progress without blocking; may or may not be complete
  for (int i = 2; i >= 0; --i) works[static_cast<std::size_t>(i)].wait();
  for (int i = 0; i < 3; ++i) {
    const double factor = i == 1 ? (size() + 1) / 2.0 : rank_sum();
    expect_equal(buffers[static_cast<std::size_t>(i)], (torch::arange(1, 1000 * (i + 1) + 1, torch::kDouble) * factor).to(at::kFloat));
  }
  EXPECT_TRUE(works[0].test());
}

// A group's blocked_seconds counts the time a rank waits in a collective on it: here every rank but the
// last waits at least as long as the last one sleeps before joining the all_reduce.
TEST_F(Collectives, BlockedSecondsCountsTheWaitInACollective) {
  const int last = group_.size() - 1;
  const double before = group_.blocked_seconds();
  if (group_.rank() == last) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  all_reduce(group_, torch::ones({4}), ReduceOp::kSum);
  const double blocked = group_.blocked_seconds() - before;
  EXPECT_GE(blocked, 0.0);
  if (group_.rank() != last) {
    EXPECT_GE(blocked, 0.09) << "rank " << group_.rank();
  }
}

TEST_F(Collectives, AllGatherEveryDtypeInGroupRankOrder) {
  for (at::ScalarType dtype : kAllDtypes) {
    SCOPED_TRACE(at::toString(dtype));
    const at::Tensor input = (torch::arange(0, 6, torch::kDouble).reshape({2, 3}) + 10 * rank()).to(dtype);
    const at::Tensor output = torch::empty({2 * size(), 3}, dtype);
    all_gather(group_, input, output);
    for (int r = 0; r < size(); ++r) {
      expect_equal(output.slice(0, 2 * r, 2 * r + 2),
                   (torch::arange(0, 6, torch::kDouble).reshape({2, 3}) + 10 * r).to(dtype));
    }
  }
}

TEST_F(Collectives, ReduceScatterEveryDtypeAndOp) {
  constexpr int64_t kBlock = 3;
  for (at::ScalarType dtype : kAllDtypes) {
    SCOPED_TRACE(at::toString(dtype));
    const at::Tensor block_values = torch::arange(rank() * kBlock + 1, (rank() + 1) * kBlock + 1, torch::kDouble);
    const at::Tensor input = ramp(kBlock * size(), dtype, rank());
    const at::Tensor output = torch::empty({kBlock}, dtype);
    reduce_scatter(group_, input, output, ReduceOp::kSum);
    expect_equal(output, (block_values * rank_sum()).to(dtype));
    reduce_scatter(group_, input, output, ReduceOp::kMax);
    expect_equal(output, (block_values * size()).to(dtype));
    if (at::isFloatingType(dtype)) {
      reduce_scatter(group_, input, output, ReduceOp::kAvg);
      expect_equal(output, (block_values * ((size() + 1) / 2.0)).to(dtype));
    }
  }
}

TEST_F(Collectives, BroadcastEveryDtypeFromEveryRoot) {
  for (at::ScalarType dtype : kAllDtypes) {
    for (int root = 0; root < size(); ++root) {
      SCOPED_TRACE(std::string(at::toString(dtype)) + " root " + std::to_string(root));
      const at::Tensor t = ramp(4, dtype, rank());
      broadcast(group_, t, root);
      expect_equal(t, ramp(4, dtype, root));
    }
  }
}

TEST_F(Collectives, BarrierWaitsForEveryRank) {
  // Rank 0 creates a file late; after the barrier every rank must see it.
  at::Tensor token = torch::tensor({static_cast<int64_t>(::getpid())});
  broadcast(group_, token, 0);
  const std::filesystem::path marker =
      std::filesystem::temp_directory_path() / ("cord_barrier_" + std::to_string(token.item<int64_t>()));
  if (rank() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::ofstream(marker) << "here";
  }
  barrier(group_);
  EXPECT_TRUE(std::filesystem::exists(marker));
  barrier(group_);
  if (rank() == 0) std::filesystem::remove(marker);
}

TEST_F(Collectives, GatherStringsInRankOrderOnRoot) {
  const std::vector<std::string> got = gather_strings(group_, std::string(static_cast<std::size_t>(rank()), 'x'), 0);
  if (rank() != 0) {
    EXPECT_TRUE(got.empty());
    return;
  }
  ASSERT_EQ(got.size(), static_cast<std::size_t>(size()));
  for (int r = 0; r < size(); ++r) EXPECT_EQ(got[static_cast<std::size_t>(r)], std::string(static_cast<std::size_t>(r), 'x'));
}

// Argument errors are raised before any communication, identically on every rank.
template <typename Call>
std::string error_of(Call&& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(Collectives, RejectsNonContiguousInput) {
  const at::Tensor t = torch::zeros({4, 3}).t();
  EXPECT_NE(error_of([&] { all_reduce(group_, t, ReduceOp::kSum); }).find("all_reduce on group 'world': tensor is not contiguous"),
            std::string::npos);
}

TEST_F(Collectives, RejectsWrongDevice) {
  const at::Tensor t = torch::empty({4}, torch::TensorOptions().device(torch::kMeta));
  EXPECT_NE(error_of([&] { broadcast(group_, t, 0); }).find("tensor on device 'meta'"), std::string::npos);
}

TEST_F(Collectives, RejectsUnsupportedDtypes) {
  for (at::ScalarType dtype : {at::kHalf, at::kShort, at::kBool, at::kComplexFloat}) {
    const at::Tensor t = torch::zeros({2}, dtype);
    EXPECT_NE(error_of([&] { all_reduce(group_, t, ReduceOp::kSum); }).find("is not supported"), std::string::npos)
        << at::toString(dtype);
  }
}

TEST_F(Collectives, RejectsAvgOnIntegers) {
  const at::Tensor t = torch::zeros({2}, torch::kInt);
  EXPECT_NE(error_of([&] { all_reduce(group_, t, ReduceOp::kAvg); }).find("avg needs a floating-point tensor"),
            std::string::npos);
}

TEST_F(Collectives, RejectsMismatchedSizesAndDtypes) {
  const at::Tensor input = torch::zeros({3});
  EXPECT_NE(error_of([&] { all_gather(group_, input, torch::zeros({3 * size() + 1})); }).find("output numel"),
            std::string::npos);
  EXPECT_NE(error_of([&] { all_gather(group_, input, torch::zeros({3 * size()}, torch::kDouble)); })
                .find("input dtype Float != output dtype Double"),
            std::string::npos);
  EXPECT_NE(error_of([&] { reduce_scatter(group_, input, torch::zeros({2}), ReduceOp::kSum); }).find("input numel"),
            std::string::npos);
  EXPECT_NE(error_of([&] { broadcast(group_, input, size()); }).find("root"), std::string::npos);
  EXPECT_NE(error_of([&] { all_reduce(group_, at::Tensor(), ReduceOp::kSum); }).find("undefined"), std::string::npos);
}

// agree(): every rank learns how many failed, the lowest failing rank's message and the
// highest exit code; nobody failing is ok everywhere.
TEST_F(Collectives, AgreeNamesTheFirstFailingRankToEveryRank) {
  EXPECT_TRUE(agree(group_, "").ok());
  // The odd ranks fail, each with its own message and code 10 + rank.
  const bool fails = rank() % 2 == 1;
  const Agreement a = agree(group_, fails ? "disk full on rank " + std::to_string(rank()) : "", 10 + rank());
  EXPECT_FALSE(a.ok());
  EXPECT_EQ(a.failed_ranks, size() / 2);
  EXPECT_EQ(a.first_failed, 1);
  EXPECT_EQ(a.message, "disk full on rank 1");
  EXPECT_EQ(a.highest_code, 10 + (size() % 2 == 0 ? size() - 1 : size() - 2));
}

}  // namespace
}  // namespace cord::comm
