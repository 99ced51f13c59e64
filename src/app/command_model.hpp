#pragma once
// The model of the commands that take their weights from a file rather than a stage
// (`cord generate`, `cord export`, `cord eval --ckpt source`): a cord weights file or a
// training checkpoint (its parameters; the optimizer state is not read) when --weights
// names one, else the hf: directory of model.source. Private to the app module.
#include <string>

#include "cord/comm/process_group.hpp"
#include "cord/model/lalm.hpp"

namespace cord::app {

struct CommandModel {
  model::Lalm model{nullptr};
  std::string weights;  // where the weights came from (the file or the directory), for logs
};

// Throws UsageError naming `command` when there are no weights to load (no --weights and
// the built-in model.source), before building anything.
CommandModel load_command_model(const char* command, const ModelConfig& config, const comm::ProcessGroups& groups,
                                const std::string& weights_path);

}  // namespace cord::app
