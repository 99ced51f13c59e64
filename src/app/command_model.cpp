#include "command_model.hpp"

#include "cord/ckpt/checkpoint.hpp"
#include "cord/ckpt/model_weights.hpp"
#include "cord/core/error.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/hf/hf_model.hpp"

namespace cord::app {

namespace {

// Collective: the parameters of training checkpoint `path` into `model` (every rank its
// block, whatever layout wrote the file).
void load_checkpoint_params(const std::string& path, const std::string& stage, model::Lalm& model,
                            const comm::ProcessGroups& groups) {
  std::vector<ckpt::ShardedTensor> tensors;
  for (const model::ParamShard& shard : model::sharded_parameters(*model, groups.tp)) {
    tensors.push_back({"params/" + shard.name, shard.in_global(), shard.global_shape, shard.split_dim, shard.offset,
                       /*writes=*/false});
  }
  ckpt::load_checkpoint(path, tensors, groups, model->config(), stage);
}

}  // namespace

CommandModel load_command_model(const char* command, const ModelConfig& config, const comm::ProcessGroups& groups,
                                const std::string& weights_path) {
  const comm::ProcessGroup& tp = groups.tp;
  const std::string directory = hf::hf_directory(config.source);
  if (weights_path.empty() && directory.empty()) {
    throw UsageError(std::string("cord ") + command + ": no weights: give --weights PATH or set model.source = hf:DIR");
  }
  CommandModel loaded;
  if (!weights_path.empty()) {
    loaded.model = model::Lalm(config, tp, model::Initialization::kAll);
    loaded.weights = weights_path;
    // A training checkpoint, or else a weights file (load_weights names what is wrong).
    const ckpt::CheckpointInfo checkpoint = ckpt::inspect_checkpoint(weights_path, /*verify=*/false);
    if (checkpoint.problem.empty()) {
      load_checkpoint_params(weights_path, checkpoint.header.progress.stage, loaded.model, groups);
    } else {
      ckpt::load_weights(weights_path, loaded.model);
    }
  } else {
    // The decoder comes from the files: drawing it first would only cost time.
    loaded.model = model::Lalm(config, tp, hf::hf_initialization(config));
    loaded.weights = directory;
    hf::load_hf_model(directory, loaded.model);
  }
  return loaded;
}

}  // namespace cord::app
