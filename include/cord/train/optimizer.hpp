#pragma once
// AdamW with decoupled weight decay (Loshchilov & Hutter), the learning-rate schedule
// (linear warmup, then cosine decay to a floor) and global gradient-norm clipping that
// knows about tensor parallelism.
//
// Parameter groups: weight decay applies to matrices only; norms' scales and biases
// (every parameter with fewer than 2 dimensions) are not decayed.
//
// ZeRO-1 (optional): with a dp group, the optimizer state is sharded over its ranks by
// parameter (as PyTorch's ZeroRedundancyOptimizer does): every parameter has one owner
// rank, chosen greedily to balance element counts; each rank keeps m and v of its own
// parameters only, updates them, and the owners broadcast the new values. Gradients must
// already be averaged over dp (GradientSynchronizer::finish).
//
// Update for a parameter p with gradient g at step t (1-based), learning rate lr:
//   p <- p - lr * wd * p                      (decoupled decay, decayed group only)
//   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// computed by at::_fused_adamw_, one pass over p, g, m and v per parameter.
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cord/comm/process_group.hpp"
#include "cord/model/lalm.hpp"

namespace cord::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  // `parameters`: the trainable shards (frozen ones are skipped), with their names.
  // `zero1_group`: shard the state over this (dp) group; nullptr keeps it all here.
  AdamW(const std::vector<model::ParamShard>& parameters, AdamWOptions options,
        const comm::ProcessGroup* zero1_group = nullptr);

  // One update with learning rate `lr` (times each parameter's lr_scale) using the
  // parameters' current .grad.
  void step(double lr);
  // Parameters whose name starts with `name_prefix` learn at `scale` times the step's lr
  // (decay too, as it is lr-coupled). Returns how many parameters matched.
  int64_t scale_lr(const std::string& name_prefix, double scale);
  int64_t steps_taken() const { return step_; }
  // Resuming from a checkpoint: the update count t of the bias correction (m and v are
  // restored in place through state()).
  void set_steps_taken(int64_t steps) { step_ = steps; }

  // The state for checkpoints: per trainable parameter (in construction order) its owner
  // and, on the owner, m and v (undefined elsewhere).
  struct ParamState {
    std::string name;
    at::Tensor param;
    at::Tensor exp_avg;     // m
    at::Tensor exp_avg_sq;  // v
    bool decay = true;
    int owner = 0;  // rank in the zero1 group that updates this parameter
    double lr_scale = 1.0;
  };
  const std::vector<ParamState>& state() const { return state_; }
  // Elements of optimizer state (m and v) held by this rank.
  int64_t local_state_numel() const;

 private:
  AdamWOptions options_;
  std::vector<ParamState> state_;
  int64_t step_ = 0;
  std::optional<comm::ProcessGroup> zero1_group_;
};

// Learning rate at `step` (0-based): linear warmup from 0 over `warmup_steps`, then cosine
// from peak_lr down to min_lr at `total_steps`, constant min_lr after.
struct LrSchedule {
  double peak_lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 200;
  int64_t total_steps = 10000;
  double at(int64_t step) const;
};

// The global L2 norm of all gradients of a model whose parameters may be split over the
// tp group: split parameters contribute their local squares summed across tp, replicated
// ones count once. Call after the dp averaging (gradients then agree across dp).
double global_grad_norm(const std::vector<model::ParamShard>& parameters, const comm::ProcessGroup& tp_group);

// Scales every gradient by max_norm / norm when norm > max_norm; returns the factor.
double clip_grad_norm(const std::vector<model::ParamShard>& parameters, double norm, double max_norm);

// True on every rank when `value` (a loss, a gradient norm) is finite on every rank of
// `group`; false on every rank otherwise, so that all ranks skip the same step.
bool finite_on_all_ranks(double value, const comm::ProcessGroup& group);

}  // namespace cord::train
