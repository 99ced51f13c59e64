#include "cord/app/runtime.hpp"

#include <sched.h>

#include <thread>

#include <ATen/Parallel.h>

#include "cord/comm/agree.hpp"
#include "cord/comm/mpi_check.hpp"
#include "cord/comm/watchdog.hpp"
#include "cord/core/log.hpp"

namespace cord::app {
namespace {

// Cores this rank may run on: its affinity mask when a launcher bound it (srun, mpirun
// --bind-to), otherwise the node's cores shared among the ranks on the node.
int default_threads(const comm::World& world) {
  const int node_cores = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  cpu_set_t mask;
  CPU_ZERO(&mask);
  int allowed = node_cores;
  if (sched_getaffinity(0, sizeof(mask), &mask) == 0) allowed = CPU_COUNT(&mask);
  if (allowed < node_cores) return std::max(1, allowed);
  return std::max(1, node_cores / world.local_size());
}

struct DeviceChoice {
  CudaProbe cuda;
  std::string device;
  int threads = 1;
};

DeviceChoice choose_device(const comm::World& world, const Config& config) {
  DeviceChoice choice;
  choice.cuda = probe_cuda();
  choice.threads = config.runtime.threads > 0 ? config.runtime.threads : default_threads(world);
  const DeviceOption wanted = config.runtime.device;
  const bool use_cuda = wanted == DeviceOption::kCuda || (wanted == DeviceOption::kAuto && choice.cuda.usable());
  if (!use_cuda) {
    choice.device = "cpu";
    return choice;
  }
  if (!choice.cuda.usable()) {
    throw DeviceError("runtime.device=cuda but no usable GPU: " + choice.cuda.unavailable_reason + " (" +
                      process_identity() + ")");
  }
  if (world.local_rank() >= choice.cuda.device_count) {
    throw DeviceError("local rank " + std::to_string(world.local_rank()) + " needs GPU " +
                      std::to_string(world.local_rank()) + " but only " +
                      std::to_string(choice.cuda.device_count) + " visible (" + process_identity() +
                      "); start at most one rank per GPU on each node");
  }
  choice.device = "cuda:" + std::to_string(world.local_rank());
  return choice;
}

}  // namespace

namespace detail {
std::pair<int, int> agree_on_failure(const comm::World& world, const std::string& error, int exit_code) {
  const bool failed_here = exit_code != 0;
  const comm::Agreement agreed =
      comm::agree(world.comm(), failed_here ? (error.empty() ? "unknown error" : error) : "", exit_code);
  const int failed_ranks = agreed.failed_ranks;
  if (failed_here) {
    if (failed_ranks < world.size()) {
      log_line(LogLevel::kError, "cord: error (" + process_identity() + "): " + error);
    } else if (world.rank() == 0) {
      log_line(LogLevel::kError, "cord: error: " + error);
    }
  }
  return {failed_ranks, agreed.highest_code};
}
}  // namespace detail

Session start_session(const comm::World& world, const Config& config, const comm::ParallelDims& dims) {
  DeviceChoice choice = run_agreed(world, [&] {
    DeviceChoice c = choose_device(world, config);
    if (c.device != "cpu") select_cuda_device(world.local_rank());
    return c;
  });
  at::set_num_threads(choice.threads);
  CORD_LOG(kInfo) << "world " << world.size() << " = dp " << dims.dp() << " x tp " << dims.tp() << ", device "
                  << choice.device << ", " << choice.threads << " torch thread(s) per rank";
  // Collective and not agreed: an NCCL failure here is a job-ending error (run_spmd aborts).
  comm::ProcessGroups groups = comm::make_process_groups(world, dims, choice.device != "cpu");
  std::shared_ptr<comm::HangWatchdog> watchdog;
  if (config.runtime.hang_timeout_s > 0) {
    watchdog = run_agreed(world, [&] {
      return std::make_shared<comm::HangWatchdog>(world, groups, config.runtime.hang_timeout_s);
    });
  }
  return Session{world,         config, std::move(groups), std::move(choice.cuda), choice.device, choice.threads, "",
                 std::move(watchdog)};
}

int run_spmd(int argc, char** argv, const std::function<int(const comm::World&)>& body) {
  std::optional<comm::World> world;
  try {
    world.emplace(&argc, &argv);
  } catch (const std::exception& e) {
    log_line(LogLevel::kError, std::string("cord: cannot start MPI: ") + e.what());
    return static_cast<int>(ExitCode::kCommError);
  }
  try {
    return body(*world);
  } catch (const SetupFailed& e) {
    return e.exit_code();  // already reported; every rank returns the same code
  } catch (const Error& e) {
    log_line(LogLevel::kError, "cord: fatal error (" + process_identity() + "): " + e.what());
    world->abort(static_cast<int>(e.exit_code()));
  } catch (const std::exception& e) {
    log_line(LogLevel::kError, "cord: fatal error (" + process_identity() + "): " + e.what());
    world->abort(static_cast<int>(ExitCode::kRuntimeError));
  }
}

}  // namespace cord::app
