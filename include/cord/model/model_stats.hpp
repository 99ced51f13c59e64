#pragma once
// Sizes and FLOPs of the model, from the config alone (no tensors): printed at start-up
// and used for MFU. Conventions (PaLM's, for comparability):
//   decoder forward FLOPs per token = 2 * N_matmul + 4 * L * d_attn * T
//     N_matmul = parameters of every matrix multiply, the LM head included (tied or not),
//     embedding lookups excluded; attention scores and weighted sum counted over the full
//     context T (no causal discount); d_attn = n_heads * head_dim.
//   training FLOPs = 3 x forward (backward = 2 x forward).
#include <cstdint>

#include "cord/config/config.hpp"

namespace cord::model {

int64_t resolved_kv_heads(const ModelConfig& config);
int64_t resolved_d_ff(const ModelConfig& config);  // 8/3 d rounded up to a multiple of 32 when d_ff = 0
int64_t encoder_d_ff(const AudioEncoderConfig& config);  // the same rule on the encoder width

struct ModelStats {
  int64_t decoder_params = 0;    // embedding + layers + final norm + LM head (when untied)
  int64_t encoder_params = 0;    // convolutions + encoder layers + final norm
  int64_t projector_params = 0;  // stacking MLP
  int64_t total_params = 0;
  double decoder_forward_flops_per_token = 0;  // at the given context length
  double decoder_train_flops_per_token = 0;
  double encoder_forward_flops_per_frame = 0;  // per input log-mel frame, projector included
};

// `context` = sequence length T used for the attention term; `audio_frames` = input
// log-mel frames per clip for the encoder's attention term.
ModelStats compute_model_stats(const ModelConfig& config, int64_t context, int64_t audio_frames);

}  // namespace cord::model
