#include "cord/core/error.hpp"

#include <string>

namespace cord {
namespace {
// Diagnostics only: which process is speaking. Written once at start-up, before
// any thread exists, and read when errors are formatted.
std::string g_identity = "rank ?";  // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)
std::string g_host = "?";           // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)

std::string location(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line) + ", " + g_identity;
}
}  // namespace

void set_process_identity(int world_rank, const std::string& host) {
  g_identity = "rank " + std::to_string(world_rank) + " on " + host;
  g_host = host;
}

std::string process_identity() { return g_identity; }

std::string process_host() { return g_host; }

void raise_library_error(ExitCode code, const char* library, const char* call,
                         const std::string& detail, const char* file, int line) {
  const std::string message = std::string(library) + " call " + call + " failed: " + detail +
                              " (" + location(file, line) + ")";
  switch (code) {
    case ExitCode::kCommError: throw CommError(message);
    case ExitCode::kDeviceError: throw DeviceError(message);
    case ExitCode::kUsageError: throw UsageError(message);
    default: throw Error(message, code);
  }
}

namespace detail {
void raise_check_failure(const char* condition, const std::string& message, const char* file,
                         int line) {
  throw Error(message + " [check '" + condition + "' failed at " + location(file, line) + "]");
}
}  // namespace detail

}  // namespace cord
