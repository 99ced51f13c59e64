#pragma once
// The distill stage (`cord train` with train.stage = distill): CORD and its baselines
// (cord.method, DESIGN.md section 1) from a base model, writing RUN_DIR/distill/ like the
// other stages (config.toml, metrics.jsonl, model.h5).
//
// One step, on every dp rank for its share of the global batch of prompts:
//   1. rollouts (distill/rollouts.hpp): one batched, KV-cached decode of every rollout the
//      method needs, under no-grad, from a generator seeded by (train.seed, step, dp rank);
//   2. rewards: the judge compares each GRPO rollout's final answer with the text
//      reference's (or the corpus answer); advantages A = r - mean(r) per prompt;
//   3. per micro-batch of prompts: one student forward over [audio prompt][rollout] for all
//      rollouts (the clip encoded once), one teacher forward over [text prompt][rollout]
//      under no-grad (current weights, or the frozen initial ones), the token loss on the
//      token rollouts and the GRPO loss on the group rollouts, backward;
//   4. dp gradient average, global norm, non-finite guard, clipping, AdamW
//      (ppo_inner_steps > 1: steps 3-4 repeat on the same rollouts with the clipped ratio).
// Loss scaling makes the update independent of the dp x micro-batch layout: the token loss
// is a mean over the global batch's rollouts (sum, sequence_mean) or tokens (token_mean),
// the GRPO loss a mean over its prompts.
#include <memory>
#include <string>

#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"
#include "cord/train/trainer.hpp"

namespace cord::train {

class Distiller {
 public:
  // Collective. Opens the corpus, builds the model from train.init (default
  // RUN_DIR/align/model.h5; a distill stage never starts from random weights), checks
  // vocabulary and architecture, freezes what cord.trainable leaves out, creates the run
  // directory. Throws UsageError/Error naming the file or field at fault.
  Distiller(const Config& config, const comm::ProcessGroups& groups, const std::string& device,
            const std::string& command_line);
  ~Distiller();
  Distiller(const Distiller&) = delete;
  Distiller& operator=(const Distiller&) = delete;

  // Collective: every step, periodic validation (audio and text accuracy), the weights.
  StageSummary run();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cord::train
