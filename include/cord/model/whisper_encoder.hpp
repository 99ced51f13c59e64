#pragma once
// Qwen2-Audio's speech side (model.audio.architecture = whisper): Whisper's encoder with
// Qwen2-Audio's average pooling, then one Linear into the decoder width. Parameter names
// are Hugging Face's with "audio_tower." -> "encoder." and "multi_modal_projector." ->
// "projector." (hf/hf_model.hpp maps them):
//
//   mel [B, F, n_mels] -> conv1 (k3, stride 1, pad 1) + GELU -> conv2 (k3, stride 2, pad 1)
//   + GELU -> [B, T, d_a] with T = ceil(F / 2) <= max_source_positions
//   + embed_positions.weight[:T] (fixed sinusoids; loaded, never trained)
//   -> layers.i:  h = x + out_proj(Attn(q_proj, k_proj, v_proj)(self_attn_layer_norm(x)))
//                 y = h + fc2(GELU(fc1(final_layer_norm(h))))
//      (LayerNorm eps 1e-5; biases on q, v, out, fc1, fc2 but not k; bidirectional
//      attention whose keys are the valid positions only)
//   -> average pooling (kernel 2, stride 2) -> layer_norm -> [B, T/2, d_a]
//   -> projector.linear -> [B, T/2, d]
// Valid lengths follow Hugging Face's rule: L mel frames -> (L - 1) / 2 + 1 positions after
// conv2 -> (that - 2) / 2 + 1 pooled frames (integer division).
//
// Exactness: Qwen2-Audio always runs the 30 s window (F = 2 * max_source_positions) with
// WhisperFeatureExtractor's padding frames after the audio. A valid output depends on mel
// frames [0, L + 2) only (the keys past the valid ones are masked; conv2's last valid
// position reads conv1 at position L, which reads mel frame L + 1), so F may stop at
// L + 2 frames of the extractor's output and the valid outputs are the same, at a
// fraction of the cost: data::whisper_encoder_input() cuts the features there, and corpus
// files store them so (with L as the item's valid frames).
//
// Tensor parallelism (Megatron's pairs): q/k/v and fc1 column-parallel, out_proj and fc2
// row-parallel (heads and MLP units split over tp); convolutions, positions, norms and
// the projector are replicated.
#include <torch/torch.h>

#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"
#include "cord/model/lalm.hpp"
#include "cord/model/tensor_parallel.hpp"

namespace cord::model {

// Whisper's sinusoidal position table [positions, dim]: sin of position * 10000^(-i/(dim/2-1))
// for i < dim/2, then cos of the same.
at::Tensor whisper_sinusoids(int64_t positions, int64_t dim);

// Pooled output frames for `valid_frames` valid mel frames (Hugging Face's rule).
int64_t whisper_output_frames(int64_t valid_frames);

class WhisperAttentionImpl : public torch::nn::Module {
 public:
  WhisperAttentionImpl(int64_t dim, int64_t n_heads, const comm::ProcessGroup& tp_group);
  // x [B, T, d], keys [B, 1, 1, T] (true = a valid key) -> [B, T, d].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& keys);

  ColumnParallelLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr};
  RowParallelLinear out_proj{nullptr};

 private:
  comm::ProcessGroup tp_group_;  // q, k and v share one copy_to of x
  int64_t head_dim_;
  int64_t local_heads_;
};
TORCH_MODULE(WhisperAttention);

class WhisperLayerImpl : public torch::nn::Module {
 public:
  WhisperLayerImpl(const AudioEncoderConfig& config, const comm::ProcessGroup& tp_group);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& keys);  // [B, T, d] -> [B, T, d]

  torch::nn::LayerNorm self_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  WhisperAttention self_attn{nullptr};
  ColumnParallelLinear fc1{nullptr};
  RowParallelLinear fc2{nullptr};
};
TORCH_MODULE(WhisperLayer);

class WhisperEncoderImpl : public SpeechEncoder {
 public:
  WhisperEncoderImpl(const AudioEncoderConfig& config, const comm::ProcessGroup& tp_group);
  // mel [B, F, n_mels] (F <= 2 * max_source_positions), lengths [B] valid mel frames ->
  // [B, ceil(F/2) / 2, d_a] and the valid pooled frames [B].
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& mel, const at::Tensor& lengths) override;

  torch::nn::Conv1d conv1{nullptr}, conv2{nullptr};
  torch::nn::Embedding embed_positions{nullptr};  // weight [max_source_positions, d_a], requires_grad false
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm layer_norm{nullptr};

 private:
  int64_t max_source_positions_;
};
TORCH_MODULE(WhisperEncoder);

// Qwen2-Audio's multi_modal_projector: one Linear with bias, [.., d_a] -> [.., d].
class LinearProjectorImpl : public SpeechProjector {
 public:
  LinearProjectorImpl(int64_t encoder_dim, int64_t model_dim);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& frames, const at::Tensor& lengths) override;
  torch::nn::Linear linear{nullptr};
};
TORCH_MODULE(LinearProjector);

}  // namespace cord::model
