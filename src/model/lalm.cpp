#include "cord/model/lalm.hpp"

#include <algorithm>
#include <cmath>

#include "cord/core/error.hpp"
#include "cord/model/model_stats.hpp"
#include "cord/model/whisper_encoder.hpp"

namespace cord::model {
namespace {

// Zeroes the frames at or beyond each sequence's length: x [B, C, F], lengths [B].
// Keeps padding from leaking into valid frames through the next convolution, so a clip's
// encoding does not depend on what it is batched with.
at::Tensor zero_padding_frames(const at::Tensor& x, const at::Tensor& lengths) {
  const at::Tensor frame = torch::arange(x.size(2), lengths.options());
  return x * (frame.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1).to(x.scalar_type());
}

at::Tensor conv_output_lengths(const at::Tensor& lengths) { return torch::floor_divide(lengths + 1, 2); }

}  // namespace

AudioEncoderImpl::AudioEncoderImpl(const AudioEncoderConfig& config, int64_t max_frames, double norm_eps,
                                   const comm::ProcessGroup& tp_group)
    : rope_(config.d_model / config.n_heads, max_frames, 10000.0) {
  using torch::nn::Conv1dOptions;
  conv1 = register_module("conv1", torch::nn::Conv1d(Conv1dOptions(config.n_mels, config.d_model, 3).stride(2).padding(1)));
  conv2 = register_module("conv2", torch::nn::Conv1d(Conv1dOptions(config.d_model, config.d_model, 3).stride(2).padding(1)));
  blocks = register_module("blocks", torch::nn::ModuleList());
  const AttentionShape shape{config.d_model, config.n_heads, config.n_heads};
  for (int i = 0; i < config.n_layers; ++i) {
    blocks->push_back(TransformerBlock(shape, encoder_d_ff(config), norm_eps, tp_group));
  }
  norm = register_module("norm", RMSNorm(config.d_model, norm_eps));
}

int64_t AudioEncoderImpl::output_frames(int64_t frames) { return ((frames + 1) / 2 + 1) / 2; }

std::pair<at::Tensor, at::Tensor> AudioEncoderImpl::forward(const at::Tensor& mel, const at::Tensor& lengths) {
  const at::Tensor lengths1 = conv_output_lengths(lengths);
  const at::Tensor lengths2 = conv_output_lengths(lengths1);
  at::Tensor x = zero_padding_frames(mel.transpose(1, 2), lengths);        // [B, n_mels, F]
  x = zero_padding_frames(torch::gelu(conv1->forward(x)), lengths1);      // [B, d_a, F/2]
  x = zero_padding_frames(torch::gelu(conv2->forward(x)), lengths2);      // [B, d_a, F/4]
  x = x.transpose(1, 2);                                                  // [B, F', d_a]
  const int64_t frames = x.size(1);
  CORD_CHECK(frames <= rope_.max_positions(),
             "audio of " + std::to_string(frames) + " encoder frames exceeds model.max_seq_len * projector_stack");
  const at::Tensor positions = torch::arange(frames, lengths.options()).unsqueeze(0).expand({x.size(0), frames});
  // Bidirectional over the valid frames: [B, 1, 1, F'].
  const at::Tensor valid = positions < lengths2.unsqueeze(1);
  const AttentionMask mask{false, valid.unsqueeze(1).unsqueeze(1)};
  for (const auto& block : *blocks) x = block->as<TransformerBlock>()->forward(x, positions, rope_, mask, nullptr, 0);
  return {norm->forward(x), lengths2};
}

ProjectorImpl::ProjectorImpl(int64_t encoder_dim, int64_t stack, int64_t model_dim, const comm::ProcessGroup& tp_group)
    : stack_(stack) {
  up = register_module("up", ColumnParallelLinear(encoder_dim * stack, model_dim, true, false, tp_group));
  down = register_module("down", RowParallelLinear(model_dim, model_dim, true, tp_group));
}

std::pair<at::Tensor, at::Tensor> ProjectorImpl::forward(const at::Tensor& frames, const at::Tensor& lengths) {
  const int64_t groups = frames.size(1) / stack_;
  const at::Tensor stacked =
      frames.narrow(1, 0, groups * stack_).reshape({frames.size(0), groups, stack_ * frames.size(2)});
  return {down->forward(torch::gelu(up->forward(stacked))), torch::floor_divide(lengths, stack_)};
}

DecoderImpl::DecoderImpl(const ModelConfig& config, const comm::ProcessGroup& tp_group)
    : rope_(config.d_model / config.n_heads, config.max_seq_len, config.rope_theta),
      vocab_size_(config.vocab_size),
      tp_group_(tp_group) {
  embedding = register_module("embedding", VocabParallelEmbedding(config.vocab_size, config.d_model, tp_group));
  blocks = register_module("blocks", torch::nn::ModuleList());
  const AttentionShape shape{config.d_model, config.n_heads, resolved_kv_heads(config), config.attention_bias};
  for (int i = 0; i < config.n_layers; ++i) {
    blocks->push_back(TransformerBlock(shape, resolved_d_ff(config), config.norm_eps, tp_group));
  }
  norm = register_module("norm", RMSNorm(config.d_model, config.norm_eps));
  if (!config.tie_embeddings) {
    lm_head = register_module("lm_head", ColumnParallelLinear(config.d_model, config.vocab_size, false, false, tp_group,
                                                              /*replicas=*/1, /*pad_output=*/true));
  }
}

at::Tensor DecoderImpl::embed(const at::Tensor& ids) { return embedding->forward(ids); }

at::Tensor DecoderImpl::forward(const at::Tensor& embeds, const at::Tensor& positions, const AttentionMask& mask,
                                KvCache* cache) {
  return logits(hidden(embeds, positions, mask, cache));
}

at::Tensor DecoderImpl::logits(const at::Tensor& x) {
  return mask_vocab_padding(lm_head ? lm_head->forward(x) : embedding->project(x), vocab_size_, tp_group_);
}

at::Tensor DecoderImpl::head_weight() const { return lm_head ? lm_head->weight : embedding->weight; }

at::Tensor DecoderImpl::hidden(const at::Tensor& embeds, const at::Tensor& positions, const AttentionMask& mask,
                               KvCache* cache) {
  const int64_t steps = embeds.size(1);
  const int64_t start = cache != nullptr ? cache->length : 0;
  CORD_CHECK(start + steps <= rope_.max_positions(),
             "sequence of " + std::to_string(start + steps) + " positions exceeds model.max_seq_len " +
                 std::to_string(rope_.max_positions()));
  if (cache != nullptr) {
    CORD_CHECK(start + steps <= cache->capacity, "KV cache capacity " + std::to_string(cache->capacity) +
                                                     " exceeded by " + std::to_string(start + steps) + " positions");
  }
  at::Tensor x = embeds;
  for (size_t i = 0; i < blocks->size(); ++i) {
    LayerCache* layer = cache != nullptr ? &cache->layers[i] : nullptr;
    x = blocks[i]->as<TransformerBlock>()->forward(x, positions, rope_, mask, layer, start);
  }
  if (cache != nullptr) cache->length += steps;
  return norm->forward(x);
}

KvCache DecoderImpl::make_cache(int64_t batch, int64_t capacity) const {
  KvCache cache;
  cache.capacity = capacity;
  const auto options = embedding->weight.options().requires_grad(false);
  for (const auto& block : *blocks) {
    const auto& attn = block->as<TransformerBlock>()->attn;
    const std::vector<int64_t> shape{batch, attn->local_kv_heads(), capacity, attn->head_dim()};
    cache.layers.push_back({torch::zeros(shape, options), torch::zeros(shape, options)});
  }
  return cache;
}

LalmImpl::LalmImpl(const ModelConfig& config, comm::ProcessGroup tp_group, Initialization init)
    : config_(config), tp_group_(std::move(tp_group)) {
  validate_model(config);
  validate_tensor_parallel(config, tp_group_.size());
  if (config.audio.architecture == AudioArchitecture::kWhisper) {
    encoder = register_module("encoder", std::make_shared<WhisperEncoderImpl>(config.audio, tp_group_));
    projector = register_module("projector", std::make_shared<LinearProjectorImpl>(config.audio.d_model, config.d_model));
  } else {
    const int64_t max_encoder_frames = static_cast<int64_t>(config.max_seq_len) * config.audio.projector_stack;
    encoder = register_module(
        "encoder", std::make_shared<AudioEncoderImpl>(config.audio, max_encoder_frames, config.norm_eps, tp_group_));
    projector = register_module("projector", std::make_shared<ProjectorImpl>(config.audio.d_model,
                                                                             config.audio.projector_stack,
                                                                             config.d_model, tp_group_));
  }
  decoder = register_module("decoder", Decoder(config, tp_group_));
  if (init == Initialization::kNone) return;
  const std::vector<std::string> drawn =
      init == Initialization::kAll ? std::vector<std::string>{""} : std::vector<std::string>{"encoder.", "projector."};
  initialize_parameters(*this, tp_group_, config.init_seed, config.init_std, config.n_layers, drawn);
}

std::pair<at::Tensor, at::Tensor> LalmImpl::encode_audio(const at::Tensor& mel, const at::Tensor& lengths) {
  const auto [frames, frame_lengths] = encoder->forward(mel, lengths);
  return projector->forward(frames, frame_lengths);
}

namespace {
bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool fixed_parameter(const std::string& name) { return ends_with(name, "embed_positions.weight"); }
}  // namespace

void set_trainable(torch::nn::Module& part, bool trainable) {
  for (auto& item : part.named_parameters(/*recurse=*/true)) {
    item.value().requires_grad_(trainable && !fixed_parameter(item.key()));
  }
}

void set_trainable_groups(LalmImpl& model, const std::vector<std::string>& groups) {
  const auto named = [&](const char* group) { return std::find(groups.begin(), groups.end(), group) != groups.end(); };
  set_trainable(*model.encoder, named("encoder"));
  set_trainable(*model.projector, named("projector"));
  set_trainable(*model.decoder, named("decoder"));
}

std::vector<ParamShard> sharded_parameters(const torch::nn::Module& module, const comm::ProcessGroup& tp_group) {
  std::map<std::string, ShardSpec> specs;
  auto collect = [&](const std::string& prefix, const torch::nn::Module* m) {
    if (const auto* sharded = dynamic_cast<const ShardedModule*>(m)) {
      for (const auto& [local, spec] : sharded->shard_specs()) specs[prefix.empty() ? local : prefix + "." + local] = spec;
    }
  };
  // The root itself by address: it may not be owned by a shared_ptr yet (constructors).
  collect("", &module);
  for (const auto& item : module.named_modules("", /*include_self=*/false)) collect(item.key(), item.value().get());
  std::vector<ParamShard> result;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    ParamShard shard;
    shard.name = item.key();
    shard.param = item.value();
    const auto found = specs.find(shard.name);
    if (found == specs.end()) {
      shard.global_shape = shard.param.sizes().vec();
    } else {
      shard.split_dim = found->second.dim;
      shard.global_shape = found->second.global_shape;
      shard.replicas = found->second.replicas;
      const int64_t local = shard.param.size(shard.split_dim);
      shard.offset = (tp_group.rank() / shard.replicas) * local;
      const int64_t global_rows = shard.global_shape[static_cast<size_t>(shard.split_dim)];
      shard.length = std::clamp<int64_t>(global_rows - shard.offset, 0, local);
      shard.primary = tp_group.rank() % shard.replicas == 0;
    }
    result.push_back(std::move(shard));
  }
  return result;
}

namespace {

uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 1469598103934665603ULL;
  for (const unsigned char c : text) hash = (hash ^ c) * 1099511628211ULL;
  return hash;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The global tensor of one parameter, from its name alone.
at::Tensor initial_value(const std::string& name, const std::vector<int64_t>& shape, int64_t seed, double init_std,
                         int64_t n_layers) {
  if (ends_with(name, "norm.weight")) return torch::ones(shape);
  if (fixed_parameter(name)) return whisper_sinusoids(shape[0], shape[1]);
  if (ends_with(name, ".bias")) return torch::zeros(shape);
  double std = init_std;
  if (name.find("conv") != std::string::npos) {
    int64_t fan_in = 1;
    for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    std = 1.0 / std::sqrt(static_cast<double>(fan_in));
  } else if (ends_with(name, "attn.wo.weight") || ends_with(name, "mlp.w2.weight") ||
             ends_with(name, "projector.down.weight")) {
    std = init_std / std::sqrt(2.0 * static_cast<double>(n_layers));  // residual-branch outputs
  }
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(
      splitmix64(static_cast<uint64_t>(seed) ^ fnv1a(name)));
  return at::normal(0.0, std, shape, generator);
}

}  // namespace

void initialize_parameters(torch::nn::Module& module, const comm::ProcessGroup& tp_group, int64_t seed,
                           double init_std, int64_t n_layers, const std::vector<std::string>& prefixes) {
  torch::NoGradGuard no_grad;
  for (const ParamShard& shard : sharded_parameters(module, tp_group)) {
    bool drawn = false;
    for (const std::string& prefix : prefixes) drawn = drawn || shard.name.rfind(prefix, 0) == 0;
    if (!drawn) {
      shard.param.zero_();
      continue;
    }
    at::Tensor value = initial_value(shard.name, shard.global_shape, seed, init_std, n_layers);
    if (shard.split_dim >= 0) value = value.narrow(shard.split_dim, shard.offset, shard.length);
    shard.param.zero_();  // the padding rows, if any, stay zero
    shard.in_global().copy_(value);
  }
}

}  // namespace cord::model
