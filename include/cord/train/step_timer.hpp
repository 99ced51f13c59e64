#pragma once
// Where a training step's time goes, per loop (rank 0's split is logged).
//
// The phases partition the step:
//   rollout           decoding the rollouts (distill)
//   teacher           the teacher's no-grad forward (distill KL methods)
//   forward_backward  the student's forwards, losses and backwards, minus the teacher's part
//   comm              time blocked in collectives, wherever in the step it falls
//   other             the rest: the loader, judge and advantages, clipping, the AdamW update
// A phase is timed by a Scope, net of the time blocked in collectives during it and of the
// phases timed inside it (the teacher's forward inside the student's pass). On CUDA a scope
// synchronises the device when it opens and closes, so that asynchronous kernels count in
// the phase that queued them, not in whichever later phase first waits for the GPU.
#include <c10/core/Device.h>

#include <array>
#include <chrono>
#include <vector>

#include "cord/comm/process_group.hpp"

namespace cord::train {

enum class Phase { kRollout, kTeacher, kForwardBackward };
constexpr int kPhaseCount = 3;

struct StepTimes {
  double step = 0;                    // wall seconds of the whole step
  double comm = 0;                    // blocked in collectives
  std::array<double, kPhaseCount> phase{};  // by Phase, each net of comm and nested phases
  double of(Phase p) const { return phase[static_cast<size_t>(p)]; }
  double other() const;               // step - comm - every phase (>= 0)
  StepTimes& operator+=(const StepTimes& t);
};

class StepTimer {
 public:
  // `groups`: every group the loop communicates on; their blocked times add up to comm.
  StepTimer(c10::Device device, std::vector<comm::ProcessGroup> groups)
      : device_(device), groups_(std::move(groups)) {}

  void start_step();
  // The step's times so far (after synchronising the device).
  StepTimes finish_step();
  // Seconds since start_step().
  double elapsed() const;

  class Scope {
   public:
    Scope(StepTimer& timer, Phase phase);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    StepTimer& timer_;
    Phase phase_;
    std::chrono::steady_clock::time_point start_;
    double blocked_at_start_, phases_at_start_;
  };
  Scope time(Phase phase) { return Scope(*this, phase); }

 private:
  void synchronize() const;
  double phases_total() const;
  double blocked() const;  // seconds blocked in collectives on the groups, so far
  c10::Device device_;
  std::vector<comm::ProcessGroup> groups_;
  std::chrono::steady_clock::time_point step_start_;
  double blocked_at_step_start_ = 0;
  StepTimes times_;
};

}  // namespace cord::train
