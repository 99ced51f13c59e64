#pragma once
// The subcommands of `cord`. A new command adds its factory here and to all_commands().
#include <vector>

#include "cord/app/cli.hpp"

namespace cord::app {

Command info_command();    // info_command.cpp
Command corpus_command();  // corpus_command.cpp
Command train_command();   // train_command.cpp
Command eval_command();    // eval_command.cpp
Command ckpt_command();    // ckpt_command.cpp
Command generate_command();  // generate_command.cpp
Command export_command();    // export_command.cpp

// In the order `cord --help` lists them. A static table: Invocation points into it.
inline const std::vector<Command>& all_commands() {
  static const std::vector<Command> commands = {info_command(), corpus_command(), train_command(), eval_command(),
                                                        ckpt_command(), generate_command(), export_command()};
  return commands;
}

}  // namespace cord::app
