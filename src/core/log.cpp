#include "cord/core/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <ctime>

#include "cord/core/error.hpp"

namespace cord {
namespace {
struct LoggerState {
  int rank = 0;
  LogLevel level = LogLevel::kInfo;
  LogRanks ranks;
};
// The logger is configured once at start-up, before threads exist, then only read.
LoggerState g_logger;  // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}

std::string timestamp() {
  using Clock = std::chrono::system_clock;
  const auto now = Clock::now();
  const std::time_t seconds = Clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  const std::size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  char with_millis[48];
  std::snprintf(with_millis, sizeof(with_millis), "%.*s.%03dZ", static_cast<int>(n), text,
                static_cast<int>(millis));
  return with_millis;
}
}  // namespace

LogLevel parse_log_level(std::string_view text) {
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (text == level_name(level)) return level;
  }
  throw UsageError("--log-level '" + std::string(text) + "' is not one of debug, info, warn, error");
}

LogRanks LogRanks::parse(std::string_view text) {
  LogRanks result;
  if (text == "all") {
    result.all = true;
    result.ranks.clear();
    return result;
  }
  result.ranks.clear();
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    int rank = -1;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), rank);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || rank < 0) {
      throw UsageError("--log-ranks '" + std::string(text) +
                       "' must be 'all' or a comma-separated list of ranks such as 0,3");
    }
    result.ranks.push_back(rank);
    start = comma + 1;
  }
  return result;
}

bool LogRanks::includes(int rank) const {
  return all || std::find(ranks.begin(), ranks.end(), rank) != ranks.end();
}

void configure_logging(int world_rank, LogLevel level, const LogRanks& ranks) {
  g_logger.rank = world_rank;
  g_logger.level = level;
  g_logger.ranks = ranks;
}

bool log_enabled(LogLevel level) {
  return level >= g_logger.level && (level == LogLevel::kError || g_logger.ranks.includes(g_logger.rank));
}

void log_line(LogLevel level, std::string_view message) {
  const bool prefix_rank = g_logger.ranks.all || g_logger.ranks.ranks != std::vector<int>{0};
  std::string line = "[" + timestamp() + "] [" + level_name(level) + "] ";
  if (prefix_rank) line += "[rank " + std::to_string(g_logger.rank) + "] ";
  line.append(message);
  line.push_back('\n');
  // One write(2) per line: lines from ranks sharing a terminal stay whole.
  const ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace cord
