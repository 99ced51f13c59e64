#pragma once
// Logging: timestamped lines on stderr, printed by rank 0 only unless configured
// otherwise (`--log-ranks all` or a list), with a rank prefix when more than one
// rank prints. Stdout stays free for machine-readable output (`cord info --json`).
//
//   CORD_LOG(kInfo) << "step " << step << " loss " << loss;
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace cord {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Parses "debug|info|warn|error"; throws UsageError naming the bad value.
LogLevel parse_log_level(std::string_view text);

// Which ranks print: parsed from "all" or a comma list such as "0" or "0,3".
struct LogRanks {
  bool all = false;
  std::vector<int> ranks{0};
  static LogRanks parse(std::string_view text);  // throws UsageError
  bool includes(int rank) const;
};

// Configures the process-wide logger. Call once, after MPI has started.
void configure_logging(int world_rank, LogLevel level, const LogRanks& ranks);

// True when a message at `level` from this rank would be printed.
bool log_enabled(LogLevel level);

// Writes one complete line (one write call, so lines of different ranks do not interleave).
void log_line(LogLevel level, std::string_view message);

namespace detail {
class LogStream {
 public:
  explicit LogStream(LogLevel level) : level_(level) {}
  LogStream(const LogStream&) = delete;
  LogStream& operator=(const LogStream&) = delete;
  ~LogStream() { log_line(level_, buffer_.str()); }
  template <typename T>
  LogStream& operator<<(const T& value) {
    buffer_ << value;
    return *this;
  }

 private:
  LogLevel level_;
  std::ostringstream buffer_;
};
}  // namespace detail

}  // namespace cord

// The stream expression is evaluated only when the line will be printed.
#define CORD_LOG(level)                                      \
  if (!::cord::log_enabled(::cord::LogLevel::level)) {       \
  } else                                                     \
    ::cord::detail::LogStream(::cord::LogLevel::level)
