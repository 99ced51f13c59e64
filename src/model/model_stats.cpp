#include "cord/model/model_stats.hpp"

namespace cord::model {
namespace {

struct BlockCounts {
  int64_t matmul = 0;  // parameters in matrix multiplies
  int64_t norms = 0;
};

BlockCounts block_counts(int64_t d, int64_t n_heads, int64_t kv_heads, int64_t ff) {
  const int64_t hd = d / n_heads;
  BlockCounts c;
  c.matmul = d * n_heads * hd + 2 * d * kv_heads * hd + n_heads * hd * d + 3 * d * ff;
  c.norms = 2 * d;
  return c;
}

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Qwen2-Audio's encoder (model/whisper_encoder.hpp): per layer 4 d^2 attention + 2 d ff MLP
// weights, biases on q, v, out, fc1, fc2 and two LayerNorms; conv1 runs at the frame rate,
// conv2 and the layers at 1/2, the projector at 1/4. The positions table is counted (it is a
// parameter, though fixed).
void add_whisper_stats(const ModelConfig& config, int64_t audio_frames, ModelStats& s) {
  const AudioEncoderConfig& a = config.audio;
  const int64_t da = a.d_model, ff = a.d_ff, d = config.d_model;
  const int64_t matmul = 4 * da * da + 2 * da * ff;
  const int64_t per_layer = matmul + 3 * da + ff + da + 4 * da;
  const int64_t conv1 = a.n_mels * da * 3 + da;
  const int64_t conv2 = da * da * 3 + da;
  s.encoder_params = conv1 + conv2 + int64_t{a.max_source_positions} * da + a.n_layers * per_layer + 2 * da;
  s.projector_params = da * d + d;
  s.total_params = s.decoder_params + s.encoder_params + s.projector_params;
  const double layer_frames = static_cast<double>(audio_frames) / 2;
  const double per_layer_frame = 2.0 * matmul + 4.0 * da * layer_frames;
  s.encoder_forward_flops_per_frame =
      2.0 * (conv1 - da) + 2.0 * (conv2 - da) / 2 + a.n_layers * per_layer_frame / 2 + 2.0 * da * d / 4;
}

}  // namespace

int64_t resolved_kv_heads(const ModelConfig& config) {
  return config.n_kv_heads == 0 ? config.n_heads : config.n_kv_heads;
}

int64_t resolved_d_ff(const ModelConfig& config) {
  return config.d_ff > 0 ? config.d_ff : round_up(8 * static_cast<int64_t>(config.d_model) / 3, 32);
}

int64_t encoder_d_ff(const AudioEncoderConfig& config) { return round_up(8 * static_cast<int64_t>(config.d_model) / 3, 32); }

ModelStats compute_model_stats(const ModelConfig& config, int64_t context, int64_t audio_frames) {
  ModelStats s;
  const int64_t d = config.d_model;
  const int64_t vocab = config.vocab_size;
  const BlockCounts dec = block_counts(d, config.n_heads, resolved_kv_heads(config), resolved_d_ff(config));
  const int64_t head = vocab * d;
  s.decoder_params = vocab * d + config.n_layers * (dec.matmul + dec.norms) + d + (config.tie_embeddings ? 0 : head);
  const double n_matmul = static_cast<double>(config.n_layers * dec.matmul + head);
  s.decoder_forward_flops_per_token = 2 * n_matmul + 4.0 * config.n_layers * d * static_cast<double>(context);
  s.decoder_train_flops_per_token = 3 * s.decoder_forward_flops_per_token;

  if (config.audio.architecture == AudioArchitecture::kWhisper) {
    add_whisper_stats(config, audio_frames, s);
    return s;
  }
  const AudioEncoderConfig& a = config.audio;
  const int64_t da = a.d_model;
  const int64_t enc_ff = encoder_d_ff(a);
  const BlockCounts enc = block_counts(da, a.n_heads, a.n_heads, enc_ff);
  const int64_t conv1 = a.n_mels * da * 3 + da;
  const int64_t conv2 = da * da * 3 + da;
  s.encoder_params = conv1 + conv2 + a.n_layers * (enc.matmul + enc.norms) + da;
  const int64_t stacked = a.projector_stack * da;
  s.projector_params = stacked * d + d + d * d + d;
  s.total_params = s.decoder_params + s.encoder_params + s.projector_params;

  // Per input frame: conv1 runs at 1/2 the frame rate, conv2 and the layers at 1/4,
  // the projector at 1/(4 * stack).
  const double layer_frames = static_cast<double>(audio_frames) / 4;
  const double per_layer_frame = 2.0 * enc.matmul + 4.0 * da * layer_frames;
  s.encoder_forward_flops_per_frame = 2.0 * (conv1 - da) / 2 + 2.0 * (conv2 - da) / 4 +
                                      a.n_layers * per_layer_frame / 4 +
                                      2.0 * (stacked * d + d * d) / (4.0 * a.projector_stack);
  return s;
}

}  // namespace cord::model
