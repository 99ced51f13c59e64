#include "cord/train/step_timer.hpp"

#include <torch/cuda.h>

#include <algorithm>


namespace cord::train {
namespace {

double seconds_between(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace

double StepTimes::other() const {
  double accounted = comm;
  for (const double p : phase) accounted += p;
  return std::max(0.0, step - accounted);
}

StepTimes& StepTimes::operator+=(const StepTimes& t) {
  step += t.step;
  comm += t.comm;
  for (size_t i = 0; i < phase.size(); ++i) phase[i] += t.phase[i];
  return *this;
}

void StepTimer::synchronize() const {
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
}

double StepTimer::blocked() const {
  double total = 0;
  for (const comm::ProcessGroup& group : groups_) total += group.blocked_seconds();
  return total;
}

double StepTimer::phases_total() const {
  double total = 0;
  for (const double p : times_.phase) total += p;
  return total;
}

void StepTimer::start_step() {
  times_ = StepTimes{};
  step_start_ = std::chrono::steady_clock::now();
  blocked_at_step_start_ = blocked();
}

double StepTimer::elapsed() const { return seconds_between(step_start_, std::chrono::steady_clock::now()); }

StepTimes StepTimer::finish_step() {
  synchronize();
  times_.step = elapsed();
  times_.comm = blocked() - blocked_at_step_start_;
  return times_;
}

StepTimer::Scope::Scope(StepTimer& timer, Phase phase) : timer_(timer), phase_(phase) {
  timer_.synchronize();  // the work queued before the scope is not the phase's
  start_ = std::chrono::steady_clock::now();
  blocked_at_start_ = timer_.blocked();
  phases_at_start_ = timer_.phases_total();
}

StepTimer::Scope::~Scope() {
  timer_.synchronize();
  const double nested = timer_.phases_total() - phases_at_start_;
  const double blocked = timer_.blocked() - blocked_at_start_;
  timer_.times_.phase[static_cast<size_t>(phase_)] +=
      seconds_between(start_, std::chrono::steady_clock::now()) - blocked - nested;
}

}  // namespace cord::train
