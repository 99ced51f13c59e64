#pragma once
// Transformer building blocks shared by the audio encoder and the decoder:
// RMSNorm, rotary position embeddings (RoPE), multi-head attention with grouped-query
// heads and an optional KV cache, the SwiGLU MLP, and the pre-norm block
//   h = x + Attn(RMSNorm(x));  y = h + MLP(RMSNorm(h)).
// Attention and MLP are tensor-parallel (column then row linear): each tp rank computes
// H/P query heads, Hkv/P key/value heads and d_ff/P hidden units.
// Shapes: B batch, T new positions, S key positions, d width, hd head dim.
#include <torch/torch.h>

#include <optional>

#include "cord/comm/process_group.hpp"
#include "cord/model/tensor_parallel.hpp"

namespace cord::model {

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);  // [..., d] -> [..., d]
  at::Tensor weight;                        // [d], initialised to ones

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// cos/sin tables for positions [0, max_positions), "rotate half" convention:
// x_rot = x * cos + rotate_half(x) * sin with rotate_half([a, b]) = [-b, a].
class RotaryEmbedding {
 public:
  RotaryEmbedding(int64_t head_dim, int64_t max_positions, double theta);
  // x [B, H, T, hd], positions [B, T] int64 -> rotated x.
  at::Tensor apply(const at::Tensor& x, const at::Tensor& positions) const;
  int64_t max_positions() const { return cos_.size(0); }

 private:
  // [max_positions, hd] float32; moved to the device of the first input seen there
  // (not module buffers, so model->to(device) does not move them).
  mutable at::Tensor cos_;
  mutable at::Tensor sin_;
};

// Which keys each query may attend to.
struct AttentionMask {
  bool causal = false;            // key s <= query t (fast path; no explicit mask)
  std::optional<at::Tensor> allow;  // [B, 1, T, S] bool, true = attend; overrides `causal`
};

// Keys and values of one attention layer for incremental decoding.
struct LayerCache {
  at::Tensor keys;    // [B, Hkv/P, capacity, hd]
  at::Tensor values;  // [B, Hkv/P, capacity, hd]
};

// The KV cache of a whole stack: `length` slots filled, the same for every sequence
// (left-padded prompts; padding slots are masked, not skipped).
struct KvCache {
  std::vector<LayerCache> layers;
  int64_t length = 0;
  int64_t capacity = 0;
};

struct AttentionShape {
  int64_t dim;
  int64_t n_heads;
  int64_t n_kv_heads;
  bool qkv_bias = false;  // biases on wq, wk, wv (Qwen2); wo never has one
};

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(AttentionShape shape, comm::ProcessGroup tp_group);
  // x [B, T, d]; positions [B, T]; with `cache`, writes slots [cache->length, +T) of `layer`
  // and attends over slots [0, cache->length + T). Returns [B, T, d].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& positions, const RotaryEmbedding& rope,
                     const AttentionMask& mask, LayerCache* cache, int64_t cache_length);
  int64_t local_kv_heads() const { return local_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }

  ColumnParallelLinear wq{nullptr}, wk{nullptr}, wv{nullptr};
  RowParallelLinear wo{nullptr};

 private:
  comm::ProcessGroup tp_group_;  // wq, wk, wv share one copy_to of x
  int64_t head_dim_;
  int64_t local_heads_;
  int64_t local_kv_heads_;
};
TORCH_MODULE(Attention);

class SwiGluImpl : public torch::nn::Module {
 public:
  SwiGluImpl(int64_t dim, int64_t hidden, comm::ProcessGroup tp_group);
  at::Tensor forward(const at::Tensor& x);  // w2(silu(w1 x) * w3 x)
  ColumnParallelLinear w1{nullptr}, w3{nullptr};
  RowParallelLinear w2{nullptr};

 private:
  comm::ProcessGroup tp_group_;  // w1 and w3 share one copy_to of x
};
TORCH_MODULE(SwiGlu);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(AttentionShape shape, int64_t ff_hidden, double norm_eps, const comm::ProcessGroup& tp_group);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& positions, const RotaryEmbedding& rope,
                     const AttentionMask& mask, LayerCache* cache, int64_t cache_length);
  RMSNorm attn_norm{nullptr}, mlp_norm{nullptr};
  Attention attn{nullptr};
  SwiGlu mlp{nullptr};
};
TORCH_MODULE(TransformerBlock);

}  // namespace cord::model
