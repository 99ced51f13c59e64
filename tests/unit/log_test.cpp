#include <gtest/gtest.h>

#include "cord/core/error.hpp"
#include "cord/core/log.hpp"

namespace cord {
namespace {

TEST(Log, ParsesLevels) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::kDebug);
  EXPECT_EQ(parse_log_level("error"), LogLevel::kError);
  EXPECT_THROW(parse_log_level("verbose"), UsageError);
}

TEST(Log, ParsesRankSelections) {
  EXPECT_TRUE(LogRanks::parse("all").includes(17));
  const LogRanks some = LogRanks::parse("0,3");
  EXPECT_TRUE(some.includes(0));
  EXPECT_TRUE(some.includes(3));
  EXPECT_FALSE(some.includes(1));
  EXPECT_FALSE(LogRanks().includes(1));
  for (const char* bad : {"", "1,", "x", "-1", "1;2"}) EXPECT_THROW(LogRanks::parse(bad), UsageError) << bad;
}

TEST(Log, RankFilterAndLevelDecideWhatPrints) {
  configure_logging(2, LogLevel::kWarn, LogRanks::parse("0"));
  EXPECT_FALSE(log_enabled(LogLevel::kWarn));   // rank 2 is not selected
  EXPECT_TRUE(log_enabled(LogLevel::kError));   // errors print on every rank
  configure_logging(2, LogLevel::kWarn, LogRanks::parse("all"));
  EXPECT_TRUE(log_enabled(LogLevel::kWarn));
  EXPECT_FALSE(log_enabled(LogLevel::kInfo));   // below the level
  configure_logging(0, LogLevel::kInfo, LogRanks());
}

}  // namespace
}  // namespace cord
