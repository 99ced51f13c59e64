#pragma once
// The methods of the distill stage ([cord] in config.hpp) and their rollouts: for one batch
// of prompts, every rollout a method needs (token-level rollouts, the N GRPO rollouts, the
// text references) is decoded in ONE batched, KV-cached generate() call, audio and text
// prompts side by side, each row at its own temperature.
#include <optional>
#include <string>
#include <vector>

#include "cord/config/config.hpp"
#include "cord/data/loader.hpp"
#include "cord/data/tokenizer.hpp"
#include "cord/distill/losses.hpp"
#include "cord/eval/prompts.hpp"
#include "cord/model/batch.hpp"
#include "cord/model/precision.hpp"

namespace cord::distill {

// What one cord.method generates and trains on.
struct MethodPlan {
  std::string name;
  TokenLoss token_loss = TokenLoss::kNone;
  eval::Input token_input = eval::Input::kAudio;  // who writes the token-level rollout
  double alpha = 1.0, beta = 1.0;                 // reverse-KL weights (1, 1 = unweighted)
  bool grpo = false;                              // N audio rollouts + text reference + judge
  int64_t group_size = 0;                         // N when grpo
  bool token_on_group = false;                    // the token loss reads the N group rollouts
  double fkl_mixture = 0;                         // lambda of the forward KL on the references
  bool references() const { return grpo || fkl_mixture > 0; }
  bool token_rollout() const { return token_loss != TokenLoss::kNone && !token_on_group; }
};
MethodPlan plan_for(const CordConfig& cord);

// The rollouts of P prompts (responses end with eos unless cut at the token limit).
struct Rollouts {
  model::TokenRows token;      // [P] token-level rollouts (empty: no token loss, or it reads the group)
  model::TokenRows group;      // [P * N] GRPO rollouts, prompt-major (empty: no GRPO)
  model::TokenRows reference;  // [P] text references (empty: neither GRPO nor cord.fkl_mixture)
  int64_t generated_tokens = 0;
  int64_t max_new_tokens = 0;  // the limit used (cord.max_new_tokens, capped by model.max_seq_len
                               // behind the widest prompt, audio included)
};

// Decodes every rollout of `plan` for the items of `batch` under no-grad. Temperatures:
// token rollouts cord.token_temperature, group rollouts cord.group_temperature, references
// cord.reference_temperature. `model` (the student) writes the audio rollouts, `teacher`
// the text ones (the references, and the token rollouts of sft and fkl); pass the model
// twice when the current weights teach. Collective over the model's tp group.
Rollouts generate_rollouts(model::Lalm& model, model::Lalm& teacher, const data::Batch& batch,
                           const MethodPlan& plan, const CordConfig& cord, at::Generator& generator,
                           model::Precision precision);

// Logits at the positions that predict each sequence's response tokens, gathered into a
// dense block: logits [R, W, V/P] of a right-padded batch -> [R, T, V/P] with
// T = `width`, or the longest response when 0; row r position t predicts response token t.
// Any per-position features gather the same way: hidden states [R, W, d] -> [R, T, d].
struct ResponseLogits {
  at::Tensor logits;   // [R, T, V/P] (or [R, T, d] of hidden states)
  at::Tensor targets;  // [R, T] int64, -1 past the response
  at::Tensor mask;     // [R, T] bool: t < response length (a contiguous prefix)
};
ResponseLogits response_logits(const at::Tensor& logits, const model::DecoderBatch& inputs,
                               const model::TokenRows& responses, int64_t width = 0);

// The teacher pass: `teacher` reads each text question followed by the same rollout, one
// batched forward under no-grad -> response logits [R, width, V/P] (never part of a graph).
at::Tensor teacher_response_logits(model::Lalm& teacher, const model::TokenRows& questions,
                                   const model::TokenRows& responses, int64_t width);
// The same pass, returning the teacher's final hidden states there [R, width, d_t] (for
// chunked_loss.hpp, which applies the teacher's head a chunk at a time).
at::Tensor teacher_response_hidden(model::Lalm& teacher, const model::TokenRows& questions,
                                   const model::TokenRows& responses, int64_t width);

}  // namespace cord::distill
