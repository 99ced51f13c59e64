#pragma once
// The command line of `cord`: `cord <command> [options]`. Commands plug in through a
// table (all_commands() in commands.hpp); options common to every command are parsed here.
#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "cord/core/log.hpp"

namespace cord::app {

struct Session;

// One subcommand: its name, one-line summary, its own options, and what it does.
struct Command {
  const char* name;
  const char* summary;
  void (*add_options)(boost::program_options::options_description& options);
  int (*run)(const Session& session, const boost::program_options::variables_map& options);
  // Optional: maps positional arguments onto options declared by add_options, and the
  // usage line's arguments (e.g. "ACTION [PATH]"). Null: the command takes none.
  void (*add_positional)(boost::program_options::positional_options_description& positional) = nullptr;
  const char* positional_usage = nullptr;
};

// Options every command accepts.
struct CommonOptions {
  std::string config_path;             // --config; empty = built-in defaults
  std::vector<std::string> overrides;  // --set, in order
  bool dry_run = false;                // --dry-run
  LogLevel log_level = LogLevel::kInfo;
  LogRanks log_ranks;
};

struct Invocation {
  enum class Kind { kRun, kHelp, kVersion };
  Kind kind = Kind::kRun;
  const Command* command = nullptr;  // null for top-level --help / --version
  CommonOptions common;
  boost::program_options::variables_map options;
  std::string help_text;  // for kHelp
};

// Parses argv against the command table, which must outlive the Invocation (it points
// into it); throws UsageError naming the bad argument.
Invocation parse_command_line(int argc, char** argv, const std::vector<Command>& commands);

}  // namespace cord::app
