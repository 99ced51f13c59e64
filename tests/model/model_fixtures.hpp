#pragma once
// Tiny models and batches shared by the model tests.
#include <torch/torch.h>

#include "cord/config/config.hpp"
#include "cord/model/batch.hpp"
#include "cord/model/lalm.hpp"

namespace cord::testing {

// vocab 64, d 32, 2 layers, 8 heads / 4 kv heads (grouped-query), audio d 16 with 4
// heads: every head count divides tp = 1, 2, 4.
inline ModelConfig tiny_model_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.d_ff = 64;
  c.max_seq_len = 96;
  c.init_std = 0.2;  // larger than the default so that tiny models give varied logits
  c.init_seed = 7;
  c.audio.n_mels = 8;
  c.audio.d_model = 16;
  c.audio.n_layers = 1;
  c.audio.n_heads = 4;
  c.audio.projector_stack = 2;
  return c;
}

inline model::SpecialTokens tiny_tokens() { return model::SpecialTokens{}; }

// Deterministic rows of ids in [6, vocab) (above the special tokens): lengths as given.
inline model::TokenRows token_rows(const std::vector<int64_t>& lengths, int64_t vocab, int64_t seed) {
  model::TokenRows rows;
  for (size_t i = 0; i < lengths.size(); ++i) {
    std::vector<int64_t> row;
    for (int64_t t = 0; t < lengths[i]; ++t) {
      row.push_back(6 + (seed * 131 + static_cast<int64_t>(i) * 17 + t * 7 + t * t) % (vocab - 6));
    }
    rows.push_back(row);
  }
  return rows;
}

// Log-mel-like input [B, F, n_mels] with `lengths` valid frames, zero padding after them.
inline std::pair<at::Tensor, at::Tensor> mel_batch(const std::vector<int64_t>& lengths, int64_t n_mels, int64_t seed) {
  int64_t frames = 0;
  for (int64_t l : lengths) frames = std::max(frames, l);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  at::Tensor mel = at::normal(0.0, 1.0, {static_cast<int64_t>(lengths.size()), frames, n_mels}, gen);
  for (size_t b = 0; b < lengths.size(); ++b) {
    mel[static_cast<int64_t>(b)].narrow(0, lengths[b], frames - lengths[b]).zero_();
  }
  return {mel, torch::tensor(lengths, torch::kLong)};
}

}  // namespace cord::testing
