#pragma once
// Megatron-style tensor parallelism over a tp ProcessGroup of size P (rank p).
//
// Region ops (autograd functions named for what they do to the tp region):
//   copy_to(x)       forward: identity            backward: all-reduce(sum) of the gradient
//   reduce_from(x)   forward: all-reduce(sum)     backward: identity
//   gather_from(x)   forward: all-gather last dim backward: keep this rank's slice
//   scatter_to(x)    forward: keep this slice     backward: all-gather last dim
// With P = 1 every op is the identity and communicates nothing.
//
// The linear pair, Y = X A + b with A of shape [in, out] (torch stores W = A^T, [out, in]):
//   ColumnParallelLinear splits A by columns, A = [A_1 ... A_P]: rank p holds W_p = rows
//     [p*out/P, (p+1)*out/P) of W and computes Y_p = copy_to(X) A_p + b_p — its slice of
//     the output features (gather_output=true all-gathers them).
//   RowParallelLinear splits A by rows, A = [A_1; ...; A_P]: rank p holds W_p = columns
//     [p*in/P, (p+1)*in/P) of W, takes the matching input slice X_p (as produced by a
//     column-parallel layer) and computes Y = reduce_from(X_p A_p) + b.
//   Column then Row (attention: qkv then out; MLP: up/gate then down) costs one all-reduce
//   forward and one backward per pair. Several column-parallel layers reading the same X
//   (wq, wk, wv; w1, w3) keep that single backward all-reduce by sharing one copy_to:
//   the caller applies copy_to(X) once and calls forward_in_region on each, so autograd sums
//   their input gradients before the one all-reduce.
//
// VocabParallelEmbedding splits the vocabulary: rank p holds rows [p*V/P, (p+1)*V/P) of the
// table, looks up the ids it owns (zeros elsewhere) and reduce_from sums the result.
// Padding: when P does not divide V, every rank holds Vl = ceil(V/P) rows and the global
// rows [V, P*Vl) exist only as padding on the last rank(s): zero, never looked up, not in
// the global tensor (ShardSpec.global_shape is the true [V, d]; ParamShard.length counts a
// shard's real rows), and their logits are set to kPaddingLogit (mask_vocab_padding), so
// they are never sampled and carry no probability in a loss.
// The LM head is a column-parallel projection onto the vocabulary whose logits stay split
// ([..., V/P] per rank); vocab_parallel_log_softmax and vocab_parallel_cross_entropy reduce
// the max and sum-exp across tp so that no rank materialises the full vocabulary.
//
// Every parallel parameter records how it is split (ShardSpec), so that initialisation,
// checkpoints and tests can map a local shard to its slice of the global tensor.
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "cord/comm/process_group.hpp"

namespace cord::model {

namespace tp {
at::Tensor copy_to(const at::Tensor& x, const comm::ProcessGroup& group);
at::Tensor reduce_from(const at::Tensor& x, const comm::ProcessGroup& group);
at::Tensor gather_from(const at::Tensor& x, const comm::ProcessGroup& group);
at::Tensor scatter_to(const at::Tensor& x, const comm::ProcessGroup& group);
}  // namespace tp

// How a local parameter relates to its global tensor: split along `dim` into P / replicas
// equal parts of which this rank holds part rank / replicas; dim = -1 means replicated on
// every rank. replicas > 1: groups of that many consecutive ranks hold the same part (the
// key/value heads when tp exceeds their number).
struct ShardSpec {
  int dim = -1;
  std::vector<int64_t> global_shape;
  int64_t replicas = 1;
};

// Implemented by every module that owns tensor-parallel parameters.
class ShardedModule {
 public:
  virtual ~ShardedModule() = default;
  // Local parameter name -> how it is split. Parameters not listed are replicated.
  virtual std::map<std::string, ShardSpec> shard_specs() const = 0;
};

// Rows per rank of `size` split over `parts`: size / parts, or with `pad` ceil(size / parts)
// (the last ranks' tails are padding). Without `pad`, a size that parts does not divide is a
// UsageError naming `what`.
int64_t rows_per_part(int64_t size, int64_t parts, bool pad, const std::string& what);

class ColumnParallelLinearImpl : public torch::nn::Module, public ShardedModule {
 public:
  // replicas > 1: groups of `replicas` consecutive ranks hold the same slice of out/(P/replicas)
  // features, and the weight's gradient is summed over each group (see ShardSpec).
  // pad_output: out_features need not divide evenly (the vocabulary head; see above).
  ColumnParallelLinearImpl(int64_t in_features, int64_t out_features, bool bias, bool gather_output,
                           comm::ProcessGroup group, int64_t replicas = 1, bool pad_output = false);
  at::Tensor forward(const at::Tensor& x);  // [..., in] -> [..., out/P] (or [..., out] gathered)
  // x_in_region: the input after the caller's tp::copy_to, shared with other layers.
  at::Tensor forward_in_region(const at::Tensor& x_in_region);
  std::map<std::string, ShardSpec> shard_specs() const override;

  at::Tensor weight;  // [out/P, in]
  at::Tensor bias;    // [out/P] or undefined

 private:
  int64_t in_features_;
  int64_t out_features_;
  bool gather_output_;
  bool pad_output_;
  int64_t replicas_;
  comm::ProcessGroup group_;
};
TORCH_MODULE(ColumnParallelLinear);

class RowParallelLinearImpl : public torch::nn::Module, public ShardedModule {
 public:
  RowParallelLinearImpl(int64_t in_features, int64_t out_features, bool bias, comm::ProcessGroup group);
  at::Tensor forward(const at::Tensor& x_parallel);  // [..., in/P] -> [..., out]
  std::map<std::string, ShardSpec> shard_specs() const override;

  at::Tensor weight;  // [out, in/P]
  at::Tensor bias;    // [out] (replicated) or undefined

 private:
  int64_t in_features_;
  int64_t out_features_;
  comm::ProcessGroup group_;
};
TORCH_MODULE(RowParallelLinear);

class VocabParallelEmbeddingImpl : public torch::nn::Module, public ShardedModule {
 public:
  VocabParallelEmbeddingImpl(int64_t vocab_size, int64_t dim, comm::ProcessGroup group);
  at::Tensor forward(const at::Tensor& ids);  // [...] int64 -> [..., dim]
  // Logits of this rank's vocabulary slice with the table as LM head (tied embeddings).
  at::Tensor project(const at::Tensor& hidden);  // [..., dim] -> [..., V/P]
  std::map<std::string, ShardSpec> shard_specs() const override;
  int64_t vocab_start() const { return vocab_start_; }

  at::Tensor weight;  // [V/P, dim]

 private:
  int64_t vocab_size_;
  int64_t dim_;
  int64_t vocab_start_;
  comm::ProcessGroup group_;
};
TORCH_MODULE(VocabParallelEmbedding);

// Log-softmax over the full vocabulary of logits split across tp: [..., V/P] -> [..., V/P].
at::Tensor vocab_parallel_log_softmax(const at::Tensor& logits_shard, const comm::ProcessGroup& group);

// -log softmax(logits)[target] per position, from split logits. targets [...] int64 with
// global ids; positions whose target is < 0 give 0. Returns [...] (replicated across tp).
at::Tensor vocab_parallel_cross_entropy(const at::Tensor& logits_shard, const at::Tensor& targets,
                                        const comm::ProcessGroup& group);

// What padded vocabulary rows score: exp() of it is 0 in float32 and bfloat16, and it stays
// finite so that 0 * (log p - log q) terms of a KL are 0, not NaN.
inline constexpr double kPaddingLogit = -1e9;

// logits_shard [..., Vl] with the columns of padded rows (global index >= vocab_size) set to
// kPaddingLogit; the tensor itself when this rank holds none.
at::Tensor mask_vocab_padding(const at::Tensor& logits_shard, int64_t vocab_size, const comm::ProcessGroup& group);

// Sum over the full vocabulary of a split per-token quantity: [..., V/P] -> [...].
at::Tensor vocab_parallel_sum(const at::Tensor& values_shard, const comm::ProcessGroup& group);

// The full logits on every tp rank, without autograd (sampling): [..., V/P] -> [..., V],
// cut to `vocab_size` columns when given (a padded vocabulary's padding dropped).
at::Tensor gather_vocab(const at::Tensor& logits_shard, const comm::ProcessGroup& group, int64_t vocab_size = -1);

}  // namespace cord::model
