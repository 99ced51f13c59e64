#pragma once
// The distill stage (train.stage = distill), run by StageLoop (train/stage_loop.hpp): CORD
// and its baselines (cord.method; docs/method.md) from a base model.
//
// One step, on every dp rank for its share of the global batch of prompts:
//   prepare_step  one batched, KV-cached decode of every rollout the method needs, under
//                 no-grad, from a generator seeded by (train.seed, step, dp rank); the
//                 judge's rewards of the GRPO rollouts; advantages A = r - mean(r) per prompt
//   forward       per micro-batch of prompts: one student forward over [audio prompt]
//                 [rollout] for all rollouts (the clip encoded once), one teacher forward over
//                 [text prompt][rollout] under no-grad (the frozen initial weights, or the
//                 current ones), the token loss on the token rollouts and the GRPO loss on
//                 the group rollouts
//   passes        cord.ppo_inner_steps updates on the same rollouts (> 1: clipped ratio)
// Loss scaling makes the update independent of the dp x micro-batch layout: the token loss
// is a mean over the global batch's rollouts (sum, sequence_mean) or tokens (token_mean),
// the GRPO loss a mean over its prompts.
#include <memory>

#include "cord/train/stage_loop.hpp"

namespace cord::train {

// Loads train.init (default RUN_DIR/align/model.h5; a distill stage never starts from random
// weights) into the context's model, and a frozen copy for cord.teacher = initial; freezes
// what cord.trainable leaves out. Throws UsageError naming the file or field at fault.
std::unique_ptr<Stage> make_distill_stage(StageContext& context);

}  // namespace cord::train
