#pragma once
// The audio-language model (LALM), in the shape of Qwen2-Audio:
//
//   log-mel [B, F, n_mels] --encoder--> [B, F', d_a] --projector--> [B, N, d]
//                                                                      |
//   [bos][audio][projected frames][sep][response ...]  or             v
//   [bos][text][question tokens][sep][response ...]  --Decoder (shared weights)--> logits
//
// The encoder and projector come in two architectures (model.audio.architecture):
//   cord     AudioEncoder: two Conv1d (kernel 3, stride 2, GELU), pre-norm transformer
//            blocks with bidirectional attention over the valid frames, RMSNorm (F' = F/4);
//            Projector: k consecutive encoder frames concatenated, then Linear-GELU-Linear
//            (column then row parallel) into the decoder width (N = F'/k).
//   whisper  WhisperEncoder and LinearProjector (model/whisper_encoder.hpp), Qwen2-Audio's
//            (N = F/4).
// Decoder: vocab-parallel embedding, causal pre-norm blocks (RMSNorm, RoPE, GQA, SwiGLU),
// RMSNorm, LM head (its own column-parallel matrix, or the embedding table when tied);
// logits stay split over the vocabulary ([..., V/P] per tp rank).
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"
#include "cord/model/layers.hpp"
#include "cord/model/tensor_parallel.hpp"

namespace cord::model {

// The speech side's two parts, whatever the architecture.
class SpeechEncoder : public torch::nn::Module {
 public:
  // mel [B, F, n_mels], lengths [B] (valid frames) -> [B, F', d_a] and valid lengths' [B].
  virtual std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& mel, const at::Tensor& lengths) = 0;
};
class SpeechProjector : public torch::nn::Module {
 public:
  // [B, F', d_a], lengths [B] -> decoder-width frames [B, N, d] and their lengths [B].
  virtual std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& frames, const at::Tensor& lengths) = 0;
};

class AudioEncoderImpl : public SpeechEncoder {
 public:
  AudioEncoderImpl(const AudioEncoderConfig& config, int64_t max_frames, double norm_eps,
                   const comm::ProcessGroup& tp_group);
  // mel [B, F, n_mels], lengths [B] (valid frames) -> [B, F/4, d_a] and lengths' [B].
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& mel, const at::Tensor& lengths) override;
  // Valid output frames for `frames` valid input frames: two stride-2 convolutions.
  static int64_t output_frames(int64_t frames);

  torch::nn::Conv1d conv1{nullptr}, conv2{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  RMSNorm norm{nullptr};

 private:
  RotaryEmbedding rope_;
};
TORCH_MODULE(AudioEncoder);

class ProjectorImpl : public SpeechProjector {
 public:
  ProjectorImpl(int64_t encoder_dim, int64_t stack, int64_t model_dim, const comm::ProcessGroup& tp_group);
  // [B, F', d_a], lengths [B] -> [B, F'/k, d], lengths / k (trailing frames that do not
  // fill a stack are dropped).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& frames, const at::Tensor& lengths) override;
  ColumnParallelLinear up{nullptr};
  RowParallelLinear down{nullptr};

 private:
  int64_t stack_;
};
TORCH_MODULE(Projector);

class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const ModelConfig& config, const comm::ProcessGroup& tp_group);
  at::Tensor embed(const at::Tensor& ids);  // [B, T] -> [B, T, d]
  // embeds [B, T, d], positions [B, T] -> logits [B, T, V/P]. With `cache`, appends T
  // slots to it (see KvCache). forward = logits(hidden(...)).
  at::Tensor forward(const at::Tensor& embeds, const at::Tensor& positions, const AttentionMask& mask,
                     KvCache* cache = nullptr);
  // The final norm's output [B, T, d] (what the LM head reads).
  at::Tensor hidden(const at::Tensor& embeds, const at::Tensor& positions, const AttentionMask& mask,
                    KvCache* cache = nullptr);
  // hidden [..., d] -> logits [..., V/P], padded vocabulary rows masked.
  at::Tensor logits(const at::Tensor& hidden);
  // The LM head's rows on this rank [V/P, d]: its own matrix, or the embedding table when tied.
  at::Tensor head_weight() const;
  int64_t vocab_size() const { return vocab_size_; }
  // An empty cache for `batch` sequences of up to `capacity` positions.
  KvCache make_cache(int64_t batch, int64_t capacity) const;

  VocabParallelEmbedding embedding{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  RMSNorm norm{nullptr};
  ColumnParallelLinear lm_head{nullptr};  // null when tied

 private:
  RotaryEmbedding rope_;
  int64_t vocab_size_;  // the real vocabulary: logits past it are padding (masked)
  comm::ProcessGroup tp_group_;
};
TORCH_MODULE(Decoder);

// Which parameters the constructor draws from config.init_seed.
enum class Initialization {
  kAll,          // every parameter (a fresh model, or one whose weights file replaces them)
  kAllButDecoder, // the caller loads the decoder (a Hugging Face model): drawing its
                  // parameters would only cost time (minutes for billions of them)
  kNone           // the caller loads every parameter (a Qwen2-Audio directory)
};

class LalmImpl : public torch::nn::Module {
 public:
  // Builds the modules and initialises the parameters `init` names from config.init_seed
  // so that a tp = P model holds exactly the slices of the tp = 1 model (the others are
  // zero until loaded).
  LalmImpl(const ModelConfig& config, comm::ProcessGroup tp_group, Initialization init = Initialization::kAll);
  const ModelConfig& config() const { return config_; }
  const comm::ProcessGroup& tp_group() const { return tp_group_; }

  // mel [B, F, n_mels], lengths [B] -> decoder-width frames [B, N, d] and their lengths [B].
  std::pair<at::Tensor, at::Tensor> encode_audio(const at::Tensor& mel, const at::Tensor& lengths);

  // Registered as "encoder" and "projector" in either architecture.
  std::shared_ptr<SpeechEncoder> encoder;
  std::shared_ptr<SpeechProjector> projector;
  Decoder decoder{nullptr};

 private:
  ModelConfig config_;
  comm::ProcessGroup tp_group_;
};
TORCH_MODULE(Lalm);

// One local parameter and where it sits in its global tensor (Megatron's sharded tensor:
// key, global shape, offset along the split dimension).
struct ParamShard {
  std::string name;  // dotted module path, identical for every tp size
  at::Tensor param;
  int split_dim = -1;  // -1: replicated
  std::vector<int64_t> global_shape;
  int64_t offset = 0;  // start of this shard along split_dim
  // Rows along split_dim that lie in the global tensor: param.size(split_dim), or fewer on
  // the last ranks of a padded vocabulary (tensor_parallel.hpp), whose tail is padding.
  int64_t length = 0;
  int64_t replicas = 1;  // consecutive tp ranks holding this same slice (ShardSpec)
  // False on all but the first rank of a group of replicas: it neither writes the slice
  // nor counts it in norms (its copy is identical).
  bool primary = true;

  // The part of `param` that is in the global tensor (a view; all of it when unpadded).
  at::Tensor in_global() const {
    return split_dim < 0 || length == param.size(split_dim) ? param : param.narrow(split_dim, 0, length);
  }
};

// Sets requires_grad on every parameter of `part` (an encoder, projector or decoder) but the
// fixed ones, which never train (Whisper's sinusoidal positions, as in Qwen2-Audio).
void set_trainable(torch::nn::Module& part, bool trainable);

// set_trainable on the encoder, projector and decoder: each learns if `groups` names it
// (cord.trainable, train.align_trainable; validated at config load).
void set_trainable_groups(LalmImpl& model, const std::vector<std::string>& groups);

// Every parameter of `module` with its shard description, in registration order.
std::vector<ParamShard> sharded_parameters(const torch::nn::Module& module, const comm::ProcessGroup& tp_group);

// (Re)initialises parameters from `seed`: each global tensor is drawn from a
// generator seeded by (seed, parameter name), then this rank keeps its slice.
// Only the parameters whose names start with `prefix` ("" = all).
void initialize_parameters(torch::nn::Module& module, const comm::ProcessGroup& tp_group, int64_t seed,
                           double init_std, int64_t n_layers, const std::vector<std::string>& prefixes = {""});

}  // namespace cord::model
