#include "cord/model/layers.hpp"

namespace cord::model {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  // x * rsqrt(mean(x^2, last dim) + eps) * weight, computed in one fused kernel forward and
  // backward on CUDA (the six separate elementwise passes each read and wrote the whole
  // float32 residual stream).
  return at::rms_norm(x, {weight.size(0)}, weight, eps_);
}

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, int64_t max_positions, double theta) {
  // inv_freq[i] = theta^(-2i / hd), i < hd/2; computed in float64, stored as float32.
  const at::Tensor inv_freq =
      torch::pow(theta, -torch::arange(0, head_dim, 2, torch::kDouble) / static_cast<double>(head_dim));
  const at::Tensor angles = torch::outer(torch::arange(max_positions, torch::kDouble), inv_freq);
  const at::Tensor both = torch::cat({angles, angles}, -1);  // [max_positions, hd]
  cos_ = both.cos().to(torch::kFloat);
  sin_ = both.sin().to(torch::kFloat);
}

at::Tensor RotaryEmbedding::apply(const at::Tensor& x, const at::Tensor& positions) const {
  const int64_t half = x.size(-1) / 2;
  if (cos_.device() != x.device()) {
    cos_ = cos_.to(x.device());
    sin_ = sin_.to(x.device());
  }
  // [B, T, hd] -> [B, 1, T, hd], broadcast over heads.
  const at::Tensor cos = cos_.index({positions}).unsqueeze(1).to(x.scalar_type());
  const at::Tensor sin = sin_.index({positions}).unsqueeze(1).to(x.scalar_type());
  const at::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

AttentionImpl::AttentionImpl(AttentionShape shape, comm::ProcessGroup tp_group)
    : tp_group_(tp_group),
      head_dim_(shape.dim / shape.n_heads),
      local_heads_(shape.n_heads / tp_group.size()),
      local_kv_heads_(std::max<int64_t>(1, shape.n_kv_heads / tp_group.size())) {
  const bool bias = shape.qkv_bias;
  // tp > n_kv_heads (validate_tensor_parallel requires tp % n_kv_heads == 0 then): each rank
  // holds the one key/value head its query heads use, replicated on tp / n_kv_heads ranks.
  const int64_t kv_replicas = std::max<int64_t>(1, tp_group.size() / shape.n_kv_heads);
  const int64_t kv_features = shape.n_kv_heads * head_dim_;
  wq = register_module("wq", ColumnParallelLinear(shape.dim, shape.n_heads * head_dim_, bias, false, tp_group));
  wk = register_module("wk", ColumnParallelLinear(shape.dim, kv_features, bias, false, tp_group, kv_replicas));
  wv = register_module("wv", ColumnParallelLinear(shape.dim, kv_features, bias, false, tp_group, kv_replicas));
  wo = register_module("wo", RowParallelLinear(shape.n_heads * head_dim_, shape.dim, false, tp_group));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& positions, const RotaryEmbedding& rope,
                                  const AttentionMask& mask, LayerCache* cache, int64_t cache_length) {
  const int64_t batch = x.size(0);
  const int64_t steps = x.size(1);
  // [B, T, H*hd] -> [B, H, T, hd]
  auto heads = [&](const at::Tensor& t, int64_t n) { return t.view({batch, steps, n, head_dim_}).transpose(1, 2); };
  const at::Tensor shared = tp::copy_to(x, tp_group_);  // one backward all-reduce for q, k and v
  const at::Tensor q = rope.apply(heads(wq->forward_in_region(shared), local_heads_), positions);
  at::Tensor k = rope.apply(heads(wk->forward_in_region(shared), local_kv_heads_), positions);
  at::Tensor v = heads(wv->forward_in_region(shared), local_kv_heads_);
  if (cache != nullptr) {
    cache->keys.narrow(2, cache_length, steps).copy_(k);
    cache->values.narrow(2, cache_length, steps).copy_(v);
    k = cache->keys.narrow(2, 0, cache_length + steps);
    v = cache->values.narrow(2, 0, cache_length + steps);
  }
  std::optional<at::Tensor> allow = mask.allow;
  const bool causal = mask.causal && !allow.has_value();
  const at::Tensor out = at::scaled_dot_product_attention(q, k, v, allow, 0.0, causal, std::nullopt,
                                                          /*enable_gqa=*/local_heads_ != local_kv_heads_);
  return wo->forward(out.transpose(1, 2).reshape({batch, steps, local_heads_ * head_dim_}));
}

SwiGluImpl::SwiGluImpl(int64_t dim, int64_t hidden, comm::ProcessGroup tp_group) : tp_group_(tp_group) {
  w1 = register_module("w1", ColumnParallelLinear(dim, hidden, false, false, tp_group));
  w3 = register_module("w3", ColumnParallelLinear(dim, hidden, false, false, tp_group));
  w2 = register_module("w2", RowParallelLinear(hidden, dim, false, tp_group));
}

at::Tensor SwiGluImpl::forward(const at::Tensor& x) {
  const at::Tensor shared = tp::copy_to(x, tp_group_);  // one backward all-reduce for w1 and w3
  return w2->forward(torch::silu(w1->forward_in_region(shared)) * w3->forward_in_region(shared));
}

TransformerBlockImpl::TransformerBlockImpl(AttentionShape shape, int64_t ff_hidden, double norm_eps,
                                           const comm::ProcessGroup& tp_group) {
  attn_norm = register_module("attn_norm", RMSNorm(shape.dim, norm_eps));
  attn = register_module("attn", Attention(shape, tp_group));
  mlp_norm = register_module("mlp_norm", RMSNorm(shape.dim, norm_eps));
  mlp = register_module("mlp", SwiGlu(shape.dim, ff_hidden, tp_group));
}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& positions,
                                         const RotaryEmbedding& rope, const AttentionMask& mask, LayerCache* cache,
                                         int64_t cache_length) {
  const at::Tensor h = x + attn->forward(attn_norm->forward(x), positions, rope, mask, cache, cache_length);
  return h + mlp->forward(mlp_norm->forward(h));
}

}  // namespace cord::model
