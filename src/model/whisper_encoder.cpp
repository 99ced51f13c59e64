#include "cord/model/whisper_encoder.hpp"

#include <cmath>

#include "cord/core/error.hpp"

namespace cord::model {
namespace {

// Hugging Face's nn.LayerNorm default, which Whisper and Qwen2-Audio use.
constexpr double kLayerNormEps = 1e-5;

torch::nn::LayerNorm make_layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(kLayerNormEps));
}

}  // namespace

at::Tensor whisper_sinusoids(int64_t positions, int64_t dim) {
  CORD_CHECK(dim % 2 == 0 && dim >= 4, "whisper_sinusoids: dim must be even and >= 4, got " + std::to_string(dim));
  const int64_t half = dim / 2;
  const double increment = std::log(10000.0) / static_cast<double>(half - 1);
  const at::Tensor inverse = torch::exp(-increment * torch::arange(half, torch::kFloat64));
  const at::Tensor time = torch::arange(positions, torch::kFloat64).unsqueeze(1) * inverse.unsqueeze(0);
  return torch::cat({torch::sin(time), torch::cos(time)}, 1).to(torch::kFloat32);
}

int64_t whisper_output_frames(int64_t valid_frames) { return ((valid_frames - 1) / 2 + 1 - 2) / 2 + 1; }

WhisperAttentionImpl::WhisperAttentionImpl(int64_t dim, int64_t n_heads, const comm::ProcessGroup& tp_group)
    : tp_group_(tp_group), head_dim_(dim / n_heads), local_heads_(n_heads / tp_group.size()) {
  q_proj = register_module("q_proj", ColumnParallelLinear(dim, dim, true, false, tp_group));
  k_proj = register_module("k_proj", ColumnParallelLinear(dim, dim, false, false, tp_group));
  v_proj = register_module("v_proj", ColumnParallelLinear(dim, dim, true, false, tp_group));
  out_proj = register_module("out_proj", RowParallelLinear(dim, dim, true, tp_group));
}

at::Tensor WhisperAttentionImpl::forward(const at::Tensor& x, const at::Tensor& keys) {
  const int64_t batch = x.size(0), steps = x.size(1);
  // [B, T, H/P*hd] -> [B, H/P, T, hd]
  auto heads = [&](const at::Tensor& t) { return t.view({batch, steps, local_heads_, head_dim_}).transpose(1, 2); };
  const at::Tensor shared = tp::copy_to(x, tp_group_);  // one backward all-reduce for q, k and v
  const at::Tensor q = heads(q_proj->forward_in_region(shared));
  const at::Tensor k = heads(k_proj->forward_in_region(shared));
  const at::Tensor v = heads(v_proj->forward_in_region(shared));
  const at::Tensor out = at::scaled_dot_product_attention(q, k, v, keys);
  return out_proj->forward(out.transpose(1, 2).reshape({batch, steps, local_heads_ * head_dim_}));
}

WhisperLayerImpl::WhisperLayerImpl(const AudioEncoderConfig& config, const comm::ProcessGroup& tp_group) {
  self_attn_layer_norm = register_module("self_attn_layer_norm", make_layer_norm(config.d_model));
  self_attn = register_module("self_attn", WhisperAttention(config.d_model, config.n_heads, tp_group));
  final_layer_norm = register_module("final_layer_norm", make_layer_norm(config.d_model));
  fc1 = register_module("fc1", ColumnParallelLinear(config.d_model, config.d_ff, true, false, tp_group));
  fc2 = register_module("fc2", RowParallelLinear(config.d_ff, config.d_model, true, tp_group));
}

at::Tensor WhisperLayerImpl::forward(const at::Tensor& x, const at::Tensor& keys) {
  const at::Tensor h = x + self_attn->forward(self_attn_layer_norm->forward(x), keys);
  return h + fc2->forward(torch::gelu(fc1->forward(final_layer_norm->forward(h))));
}

WhisperEncoderImpl::WhisperEncoderImpl(const AudioEncoderConfig& config, const comm::ProcessGroup& tp_group)
    : max_source_positions_(config.max_source_positions) {
  using torch::nn::Conv1dOptions;
  conv1 = register_module("conv1", torch::nn::Conv1d(Conv1dOptions(config.n_mels, config.d_model, 3).padding(1)));
  conv2 = register_module("conv2",
                          torch::nn::Conv1d(Conv1dOptions(config.d_model, config.d_model, 3).stride(2).padding(1)));
  embed_positions = register_module("embed_positions", torch::nn::Embedding(config.max_source_positions, config.d_model));
  embed_positions->weight.requires_grad_(false);
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < config.n_layers; ++i) layers->push_back(WhisperLayer(config, tp_group));
  layer_norm = register_module("layer_norm", make_layer_norm(config.d_model));
}

std::pair<at::Tensor, at::Tensor> WhisperEncoderImpl::forward(const at::Tensor& mel, const at::Tensor& lengths) {
  const int64_t window = 2 * max_source_positions_;
  if (mel.size(1) > window) {
    throw UsageError("audio of " + std::to_string(mel.size(1)) + " mel frames is longer than the Whisper encoder's window of " +
                     std::to_string(window) + " frames (2 * model.audio.max_source_positions, 30 s)");
  }
  at::Tensor x = torch::gelu(conv1->forward(mel.transpose(1, 2)));  // [B, d_a, F]
  x = torch::gelu(conv2->forward(x)).transpose(1, 2);                // [B, T, d_a], T = ceil(F / 2)
  const int64_t steps = x.size(1);
  x = x + embed_positions->weight.narrow(0, 0, steps);
  const at::Tensor positions = torch::floor_divide(lengths - 1, 2) + 1;  // valid positions after conv2
  const at::Tensor keys = (torch::arange(steps, lengths.options()).unsqueeze(0) < positions.unsqueeze(1))
                              .unsqueeze(1)
                              .unsqueeze(1);  // [B, 1, 1, T]
  for (const auto& layer : *layers) x = layer->as<WhisperLayer>()->forward(x, keys);
  x = torch::avg_pool1d(x.transpose(1, 2), {2}, {2}).transpose(1, 2);  // [B, T/2, d_a]
  return {layer_norm->forward(x), torch::floor_divide(positions - 2, 2) + 1};
}

LinearProjectorImpl::LinearProjectorImpl(int64_t encoder_dim, int64_t model_dim) {
  linear = register_module("linear", torch::nn::Linear(torch::nn::LinearOptions(encoder_dim, model_dim).bias(true)));
}

std::pair<at::Tensor, at::Tensor> LinearProjectorImpl::forward(const at::Tensor& frames, const at::Tensor& lengths) {
  return {linear->forward(frames), lengths};
}

}  // namespace cord::model
