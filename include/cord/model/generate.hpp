#pragma once
// Batched incremental decoding with a KV cache: one prefill over the left-padded prompts,
// then one position per step for every sequence at once; each sequence stops at eos
// (later steps give it padding) and the loop ends when all have stopped or after
// max_new_tokens. Temperature and top-p sampling draw from a caller-owned generator, so
// the tokens are a function of (weights, prompts, options, generator state). Under
// tensor parallelism every tp rank gathers the full-vocabulary logits and samples with
// the same generator state, so all tp ranks produce the same tokens.
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "cord/model/batch.hpp"

namespace cord::model {

struct SamplingOptions {
  int64_t max_new_tokens = 200;
  double temperature = 1.0;  // 0 = greedy (argmax)
  // Per-sequence temperatures (one per prompt row, 0 = greedy); when set they replace
  // `temperature`, so that rollouts at several temperatures share one batched decode.
  std::vector<double> temperatures;
  double top_p = 1.0;        // nucleus: smallest set of tokens with probability >= top_p
  bool use_kv_cache = true;  // false recomputes the whole sequence each step (reference, benchmarks)
};

struct Generation {
  TokenRows tokens;  // per sequence, up to and including eos when it was produced
};

// Called after each step with the step index and the full-vocabulary logits [B, V] (float32).
using StepObserver = std::function<void(int64_t step, const at::Tensor& logits)>;

// `prompts` must be left-padded prompts (assemble_* with Padding::kLeft and no responses).
Generation generate(Lalm& model, const DecoderBatch& prompts, const SpecialTokens& tokens,
                    const SamplingOptions& options, at::Generator& generator, const StepObserver& observer = {});

// Next tokens [B] from full logits [B, V]: argmax for rows at temperature 0, else a draw
// from softmax(logits / temperature) (nucleus-truncated when top_p < 1). With per-row
// temperatures every row consumes a draw, greedy rows included, so each row's tokens do
// not depend on which other rows are greedy.
at::Tensor sample_tokens(const at::Tensor& logits, double temperature, double top_p, at::Generator& generator);
at::Tensor sample_tokens(const at::Tensor& logits, const std::vector<double>& temperatures, double top_p,
                         at::Generator& generator);

}  // namespace cord::model
