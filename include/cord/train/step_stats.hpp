#pragma once
// The named statistics of a training step, and the window of steps a step record averages.
//
// Every micro-batch of every stage adds into one StepStats; the loop sums them over the dp
// ranks (sum_over) and logs ratios of the sums. The loss terms are the micro-batches'
// scaled contributions, so that their dp sum divided by dp is the step's loss; the other
// fields are (sum, count) pairs whose ratio is logged, and the work done, for throughput.
// A new field is added to the struct and to the one table in step_stats.cpp.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace cord::comm {
class ProcessGroup;
}

namespace cord::train {

struct StepStats {
  // Loss terms (the scaled contributions; dp sum / dp = the step's value).
  double loss = 0;           // what backward saw
  double token_loss = 0;     // distill: the token-level term
  double sequence_loss = 0;  // distill: the GRPO term
  // Diagnostics, as sums and counts.
  double divergence_sum = 0, divergence_tokens = 0;  // distill KL methods: unweighted per-token KL
  double reward_sum = 0, rewards = 0;                // distill GRPO: judge rewards of the group rollouts
  double rollout_tokens = 0, rollouts = 0;           // distill: every decoded rollout
  // Work: positions forwarded with a gradient and model FLOPs (model_stats.hpp convention).
  double positions = 0, flops = 0;

  StepStats& operator+=(const StepStats& other);
  // Only the loss terms of `other`: a later optimizer pass over the same batch (PPO inner
  // steps) adds its losses, while the rollouts and the work were counted by the first pass.
  void add_losses(const StepStats& other);
  // Collective over `group`: every field becomes the sum over the group's ranks.
  void sum_over(const comm::ProcessGroup& group);

  nlohmann::json to_json() const;                   // {"loss": ..., ...}: every field by name
  static StepStats from_json(const nlohmann::json& fields);  // missing fields are 0
};

// num / den, or 0 for an empty denominator (a method without that term).
double ratio_or_zero(double num, double den);

// The steps since the last step record: their summed stats and counts. Checkpointed with
// the stage (Progress::log_window), so that a resumed run's first record is the same mean
// as the uninterrupted run's. Skipped (non-finite) updates add nothing, not even a count.
struct LogWindow {
  StepStats sums;       // summed over the dp ranks and the window's finite updates
  int64_t updates = 0;  // finite optimizer updates in the window

  void clear() { *this = LogWindow{}; }
  // The mean of a loss term over the window's updates, from sums over dp ranks.
  double mean(double StepStats::*term, int dp) const;
  std::string to_text() const;                      // JSON, for the checkpoint
  static LogWindow from_text(const std::string& text);  // "" (an older checkpoint): empty
};

}  // namespace cord::train
