#pragma once
// Typed errors of cord, the process exit codes they map to (README "Exit codes"),
// and CORD_CHECK. Each foreign library gets one check macro in the module that wraps
// it (CORD_MPI_CHECK in comm/, CORD_NCCL_CHECK and CORD_CUDA_CHECK beside their
// callers); all of them end in raise_library_error(), which adds file:line and rank.
#include <stdexcept>
#include <string>

namespace cord {

// Process exit codes. Stable: job scripts branch on them.
enum class ExitCode : int {
  kOk = 0,
  kRuntimeError = 1,  // anything unexpected while working
  kUsageError = 2,    // bad command line, config file or override
  kCommError = 3,     // MPI or NCCL failure
  kDeviceError = 4,   // CUDA device missing or failing
  kRequeue = 75,      // a checkpoint was saved after a signal or the wall-time limit: requeue the job
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ExitCode code = ExitCode::kRuntimeError)
      : std::runtime_error(message), code_(code) {}
  ExitCode exit_code() const { return code_; }

 private:
  ExitCode code_;
};

// Bad command line, config or override. Raised before any work starts.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error(message, ExitCode::kUsageError) {}
};

class CommError : public Error {
 public:
  explicit CommError(const std::string& message) : Error(message, ExitCode::kCommError) {}
};

class DeviceError : public Error {
 public:
  explicit DeviceError(const std::string& message) : Error(message, ExitCode::kDeviceError) {}
};

// Who this process is, for error messages: set once after MPI starts.
void set_process_identity(int world_rank, const std::string& host);
// "rank 3 on node12", or "rank ?" before MPI has started.
std::string process_identity();
// This process's host as the World read it (MPI_Get_processor_name), or "?" before MPI has
// started: what run records and checkpoints name as the machine.
std::string process_host();

// Throws an error of the given type with "<library> call <call> failed: <detail>
// (<file>:<line>, rank R on HOST)".
[[noreturn]] void raise_library_error(ExitCode code, const char* library, const char* call,
                                      const std::string& detail, const char* file, int line);

namespace detail {
[[noreturn]] void raise_check_failure(const char* condition, const std::string& message,
                                      const char* file, int line);
}  // namespace detail

}  // namespace cord

// CORD_CHECK(cond, message): an internal invariant or a caller's precondition.
// `message` is any expression convertible to std::string, evaluated only on failure.
#define CORD_CHECK(cond, message)                                                  \
  do {                                                                             \
    if (!(cond)) ::cord::detail::raise_check_failure(#cond, (message), __FILE__, __LINE__); \
  } while (0)
