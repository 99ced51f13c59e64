#include "cord/app/cli.hpp"

#include <iomanip>
#include <sstream>

#include "cord/core/error.hpp"

namespace po = boost::program_options;

namespace cord::app {
namespace {

std::string top_level_help(const std::vector<Command>& commands) {
  std::ostringstream out;
  out << "cord — weighted on-policy cross-modal distillation (CORD), one SPMD binary.\n\n"
         "Usage: mpiexec -n N cord <command> [options]\n\nCommands:\n";
  for (const Command& c : commands) out << "  " << std::left << std::setw(10) << c.name << c.summary << "\n";
  out << "\nRun 'cord <command> --help' for the options of a command.\n"
         "  --version   print the version and commit and exit\n";
  return out.str();
}

po::options_description common_options(CommonOptions& common, std::string& log_level, std::string& log_ranks) {
  po::options_description options("Common options");
  options.add_options()
      ("help,h", "print this help and exit")
      ("config", po::value(&common.config_path)->value_name("FILE"),
       "TOML job file (e.g. jobs/tiny.toml); without it, the built-in defaults")
      ("set", po::value(&common.overrides)->composing()->value_name("SECTION.KEY=VALUE"),
       "override one config field; repeatable, applied in order after --config")
      ("dry-run", po::bool_switch(&common.dry_run),
       "print the resolved config and the rank layout, then exit 0")
      ("log-level", po::value(&log_level)->default_value("info")->value_name("LEVEL"),
       "debug | info | warn | error")
      ("log-ranks", po::value(&log_ranks)->default_value("0")->value_name("RANKS"),
       "ranks that log: 0, all, or a comma list such as 0,3 (errors always print)");
  return options;
}

}  // namespace

Invocation parse_command_line(int argc, char** argv, const std::vector<Command>& commands) {
  Invocation invocation;
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    throw UsageError("no command given\n" + top_level_help(commands));
  }
  const std::string& first = args.front();
  if (first == "--help" || first == "-h" || first == "help") {
    invocation.kind = Invocation::Kind::kHelp;
    invocation.help_text = top_level_help(commands);
    return invocation;
  }
  if (first == "--version") {
    invocation.kind = Invocation::Kind::kVersion;
    return invocation;
  }
  for (const Command& c : commands) {
    if (first == c.name) invocation.command = &c;
  }
  if (invocation.command == nullptr) {
    throw UsageError("unknown command '" + first + "'\n" + top_level_help(commands));
  }

  const Command& command = *invocation.command;
  std::string log_level;
  std::string log_ranks;
  po::options_description all(std::string("cord ") + command.name + ": " + command.summary +
                              "\n\nUsage: mpiexec -n N cord " + command.name +
                              (command.positional_usage != nullptr ? std::string(" ") + command.positional_usage : "") +
                              " [options]");
  po::options_description own(std::string(command.name) + " options");
  command.add_options(own);
  all.add(own).add(common_options(invocation.common, log_level, log_ranks));
  po::positional_options_description positional;
  if (command.add_positional != nullptr) command.add_positional(positional);
  try {
    po::store(po::command_line_parser(std::vector<std::string>(args.begin() + 1, args.end()))
                  .options(all)
                  .positional(positional)
                  .run(),
              invocation.options);
    po::notify(invocation.options);
  } catch (const po::error& e) {
    throw UsageError(std::string("cord ") + command.name + ": " + e.what() + " (see 'cord " +
                     command.name + " --help')");
  }
  if (invocation.options.count("help") != 0) {
    invocation.kind = Invocation::Kind::kHelp;
    std::ostringstream help;
    help << all;
    invocation.help_text = help.str();
    return invocation;
  }
  invocation.common.log_level = parse_log_level(log_level);
  invocation.common.log_ranks = LogRanks::parse(log_ranks);
  return invocation;
}

}  // namespace cord::app
