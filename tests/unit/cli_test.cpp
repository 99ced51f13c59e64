// Command-line parsing of `cord`, against the real command table.
#include <gtest/gtest.h>

#include "cord/app/cli.hpp"
#include "cord/app/commands.hpp"
#include "cord/core/error.hpp"

namespace cord::app {
namespace {

Invocation parse(std::vector<std::string> args) {
  args.insert(args.begin(), "cord");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return parse_command_line(static_cast<int>(argv.size()), argv.data(), all_commands());
}

std::string usage_error_of(std::vector<std::string> args) {
  try {
    parse(std::move(args));
  } catch (const UsageError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Cli, TopLevelHelpListsOnlyExistingCommands) {
  const Invocation inv = parse({"--help"});
  EXPECT_EQ(inv.kind, Invocation::Kind::kHelp);
  for (const char* command : {"info", "corpus", "train", "eval", "ckpt"}) {
    EXPECT_NE(inv.help_text.find(std::string("  ") + command), std::string::npos) << command;
  }
  EXPECT_EQ(inv.help_text.find("  slurm"), std::string::npos);  // no command of that name
}

TEST(Cli, CommandHelpListsItsAndCommonOptions) {
  const Invocation inv = parse({"info", "--help"});
  EXPECT_EQ(inv.kind, Invocation::Kind::kHelp);
  for (const char* option : {"--json", "--config", "--set", "--dry-run", "--log-ranks", "--log-level"}) {
    EXPECT_NE(inv.help_text.find(option), std::string::npos) << option;
  }
}

TEST(Cli, RepeatedSetKeepsOrder) {
  const Invocation inv = parse({"info", "--set", "parallel.tp=2", "--set=runtime.device=cpu", "--json"});
  EXPECT_EQ(inv.command->name, std::string("info"));
  EXPECT_EQ(inv.common.overrides, (std::vector<std::string>{"parallel.tp=2", "runtime.device=cpu"}));
  EXPECT_TRUE(inv.options["json"].as<bool>());
}

TEST(Cli, CommonOptions) {
  const Invocation inv =
      parse({"info", "--config", "jobs/x.toml", "--dry-run", "--log-ranks", "all", "--log-level", "debug"});
  EXPECT_EQ(inv.common.config_path, "jobs/x.toml");
  EXPECT_TRUE(inv.common.dry_run);
  EXPECT_TRUE(inv.common.log_ranks.all);
  EXPECT_EQ(inv.common.log_level, LogLevel::kDebug);
}

TEST(Cli, Errors) {
  EXPECT_NE(usage_error_of({}).find("no command given"), std::string::npos);
  EXPECT_NE(usage_error_of({"trian"}).find("unknown command 'trian'"), std::string::npos);
  EXPECT_NE(usage_error_of({"info", "--jsn"}).find("--jsn"), std::string::npos);
  EXPECT_NE(usage_error_of({"info", "--log-ranks", "some"}).find("--log-ranks 'some'"), std::string::npos);
  EXPECT_NE(usage_error_of({"info", "--config"}).find("--config"), std::string::npos);
}

}  // namespace
}  // namespace cord::app
