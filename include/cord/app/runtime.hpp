#pragma once
// The SPMD frame every command runs in:
//   run_spmd()   creates the World, runs the body, and turns errors into exit codes:
//                a setup failure (bad CLI/config/layout) ends every rank cleanly with the
//                same code, printed once; any other error on any rank prints its message
//                with the rank and ends the whole job (MPI_Abort) — never a hang.
//   run_agreed() runs one setup step on every rank and agrees on its outcome.
//   start_session() resolves threads, device and process groups for a command.
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"
#include "cord/config/config.hpp"
#include "cord/core/cuda_device.hpp"
#include "cord/core/error.hpp"

namespace cord::comm {
class HangWatchdog;
}  // namespace cord::comm

namespace cord::app {

// What a command gets: the world, the resolved config and layout, and its groups.
struct Session {
  const comm::World& world;
  Config config;
  comm::ProcessGroups groups;
  CudaProbe cuda;
  std::string device;  // "cpu" or "cuda:<index>"
  int threads = 1;     // torch intra-op threads of this rank
  std::string command_line;  // argv joined by spaces, for run records
  // Runs while the session lives (runtime.hang_timeout_s > 0). Declared last, so that it
  // stops before the groups it polls are freed.
  std::shared_ptr<comm::HangWatchdog> watchdog;
};

// Thrown on every rank when run_agreed() saw a failure on any rank; carries the exit code.
class SetupFailed : public std::exception {
 public:
  explicit SetupFailed(int exit_code) : exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }
  const char* what() const noexcept override { return "setup failed"; }

 private:
  int exit_code_;
};

namespace detail {
// Collective: returns (ranks that failed, highest exit code among them); prints `error`
// here when this rank failed and either some ranks succeeded or this is rank 0.
std::pair<int, int> agree_on_failure(const comm::World& world, const std::string& error, int exit_code);
}  // namespace detail

// Runs `step` on every rank. If it threw on any rank, every rank throws SetupFailed with
// the highest exit code; the message is printed once when all ranks failed alike.
template <typename Step>
auto run_agreed(const comm::World& world, Step&& step) -> decltype(step()) {
  std::optional<decltype(step())> result;
  std::string error;
  int exit_code = 0;
  try {
    result.emplace(step());
  } catch (const Error& e) {
    error = e.what();
    exit_code = static_cast<int>(e.exit_code());
  } catch (const std::exception& e) {
    error = e.what();
    exit_code = static_cast<int>(ExitCode::kRuntimeError);
  }
  const auto [failed_ranks, highest_code] = detail::agree_on_failure(world, error, exit_code);
  if (failed_ranks > 0) throw SetupFailed(highest_code);
  return std::move(*result);
}

// Collective: sets torch threads, binds the GPU when the config asks for CUDA, builds
// the process groups (with NCCL on CUDA) and starts the hang watchdog. Errors are agreed, so a bad device on one
// node stops every rank.
Session start_session(const comm::World& world, const Config& config, const comm::ParallelDims& dims);

// Creates the World and runs `body` with the error policy described above.
int run_spmd(int argc, char** argv, const std::function<int(const comm::World&)>& body);

}  // namespace cord::app
