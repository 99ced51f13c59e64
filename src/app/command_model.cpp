#include "command_model.hpp"

#include "cord/ckpt/model_weights.hpp"
#include "cord/core/error.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/hf/hf_model.hpp"

namespace cord::app {

CommandModel load_command_model(const char* command, const ModelConfig& config, const comm::ProcessGroup& tp,
                                const std::string& weights_path) {
  const std::string directory = hf::hf_directory(config.source);
  if (weights_path.empty() && directory.empty()) {
    throw UsageError(std::string("cord ") + command + ": no weights: give --weights PATH or set model.source = hf:DIR");
  }
  CommandModel loaded;
  if (!weights_path.empty()) {
    loaded.model = model::Lalm(config, tp, model::Initialization::kAll);
    loaded.weights = weights_path;
    ckpt::load_weights(weights_path, loaded.model);
  } else {
    // The decoder comes from the files: drawing it first would only cost time.
    loaded.model = model::Lalm(config, tp, model::Initialization::kAllButDecoder);
    loaded.weights = directory;
    hf::load_hf_decoder(directory, loaded.model);
  }
  return loaded;
}

}  // namespace cord::app
