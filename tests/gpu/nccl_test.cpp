// NCCL collectives on CUDA tensors with one rank (the device machine has one GPU, and
// NCCL cannot put two ranks on one GPU). Skipped, and reported as skipped, without a GPU.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "cord/app/runtime.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/config/load.hpp"
#include "cord/core/cuda_device.hpp"
#include "cord/core/error.hpp"
#include "mpi_test_world.hpp"

namespace cord::comm {
namespace {

class Nccl : public ::testing::Test {
 protected:
  void SetUp() override {
    const CudaProbe probe = probe_cuda();
    if (!probe.usable()) GTEST_SKIP() << "no usable GPU: " << probe.unavailable_reason;
    const World& world = testing::world();
    const Config config = load_config("", {"runtime.device=cuda"});
    session_.emplace(app::start_session(world, config, ParallelDims::resolve(0, 1, world.size())));
  }
  const ProcessGroup& group() const { return session_->groups.world; }
  std::optional<app::Session> session_;
};

TEST_F(Nccl, SessionBindsTheGpuAndBuildsNcclCommunicators) {
  EXPECT_EQ(session_->device, "cuda:" + std::to_string(testing::world().local_rank()));
  EXPECT_TRUE(session_->groups.world.has_nccl());
  EXPECT_TRUE(session_->groups.dp.has_nccl());
  EXPECT_TRUE(session_->groups.tp.has_nccl());
}

TEST_F(Nccl, AllReduceEveryDtypeAndOp) {
  for (at::ScalarType dtype : {at::kFloat, at::kDouble, at::kBFloat16, at::kInt, at::kLong}) {
    SCOPED_TRACE(at::toString(dtype));
    const at::Tensor cpu = torch::arange(1, 9, torch::kDouble).to(dtype);
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax}) {
      const at::Tensor t = cpu.to(torch::kCUDA);
      all_reduce(group(), t, op);
      EXPECT_TRUE(torch::equal(t.cpu(), cpu * (op == ReduceOp::kSum ? group().size() : 1)));
    }
    if (at::isFloatingType(dtype)) {
      const at::Tensor t = cpu.to(torch::kCUDA);
      all_reduce(group(), t, ReduceOp::kAvg);
      EXPECT_TRUE(torch::equal(t.cpu(), cpu));
    }
  }
}

TEST_F(Nccl, AllGatherReduceScatterBroadcastBarrier) {
  const int n = group().size();
  const at::Tensor input = torch::arange(0, 6, torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA));
  const at::Tensor gathered = torch::empty({6 * n}, input.options());
  all_gather(group(), input, gathered);
  EXPECT_TRUE(torch::equal(gathered.slice(0, 0, 6).cpu(), input.cpu()));

  const at::Tensor scattered = torch::empty({6 / n}, input.options());
  reduce_scatter(group(), input, scattered, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(scattered.cpu(), (input.slice(0, 0, 6 / n) * n).cpu()));

  const at::Tensor b = input.clone();
  broadcast(group(), b, 0);
  barrier(group());
  EXPECT_TRUE(torch::equal(b.cpu(), input.cpu()));
}

TEST_F(Nccl, CudaTensorOnGroupWithoutNcclIsAnError) {
  const ProcessGroup mpi_only = ProcessGroup::world(testing::world());
  const at::Tensor t = torch::ones({2}, torch::TensorOptions().device(torch::kCUDA));
  EXPECT_THROW(all_reduce(mpi_only, t, ReduceOp::kSum), Error);
}

}  // namespace
}  // namespace cord::comm
