#pragma once
// The weights file of a trained model (RUN_DIR/STAGE/model.h5): what one training stage
// hands to the next and to `cord eval`. Every parameter is stored in its *global* shape
// (tensor-parallel shards gathered), so a file written under any dp x tp layout loads
// under any other. Layout (readable with h5py):
//   /params/<parameter name>   float32, global shape   (e.g. /params/decoder.norm.weight)
//   root attributes: format = "cord-weights", version = 1, stage, step, commit, config
//   (the resolved TOML), vocab (the tokenizer's tokens, one per line), and one attribute
//   per architecture field ("model.d_model" = 128, ...), checked on load.
// Written by world rank 0 under a temporary name, fsynced and renamed into place: a file
// at the final path is always complete. Full training checkpoints (optimizer, RNG and
// loader state) are a separate, later format.
#include <string>
#include <vector>

#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"
#include "cord/model/lalm.hpp"

namespace cord::ckpt {

struct WeightsMeta {
  std::string stage;               // "text", "align", ...
  int64_t step = 0;                // optimizer steps taken in that stage
  std::string config_toml;         // the resolved config of the run that wrote it
  std::vector<std::string> vocab;  // the tokenizer the model was trained with
};

// Collective over `tp_group`: the global tensor of `shard` on every rank of it (CPU,
// float32, contiguous).
at::Tensor gather_global(const model::ParamShard& shard, const comm::ProcessGroup& tp_group);

// Collective over `groups.world`: the tp ranks of dp rank 0 gather the shards, world rank
// 0 writes `path`. Throws Error naming the file on any failure (every rank learns of it).
void save_weights(const std::string& path, model::Lalm& model, const comm::ProcessGroups& groups,
                  const WeightsMeta& meta);

// What a weights file says about itself, without loading tensors.
struct WeightsHeader {
  std::string path;
  std::string stage;
  int64_t step = 0;
  std::string commit;
  std::vector<std::string> vocab;
};

// Opens `path` and checks that it was written for an architecture equal to `model_config`
// (every model.* field except the initialisation ones); throws Error listing each field
// that differs ("model.d_model: file 128, config 256").
WeightsHeader read_weights_header(const std::string& path, const ModelConfig& model_config);

// Checks the header as read_weights_header() does, then loads every parameter of `model`
// (this rank's shard of each global tensor). Throws Error naming the file and the
// parameter when one is missing or has another global shape.
WeightsHeader load_weights(const std::string& path, model::Lalm& model);

// Throws UsageError when `vocab` (of a corpus) differs from the weights' vocabulary,
// naming the first differing token id.
void check_same_vocab(const WeightsHeader& weights, const std::vector<std::string>& vocab,
                      const std::string& corpus_path);

}  // namespace cord::ckpt
