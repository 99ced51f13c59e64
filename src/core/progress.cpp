#include "cord/core/progress.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <string_view>

namespace cord {
namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The record. Numbers are atomics (written by the working thread, read by the watchdog);
// the collective's group name changes under the mutex.
struct Record {
  std::atomic<int64_t> last_progress_ns{now_ns()};
  std::atomic<int64_t> step{0};
  std::atomic<int64_t> collectives_entered{0};
  std::atomic<bool> in_collective{false};
  std::atomic<const char*> phase{"startup"};
  std::mutex names;
  const char* collective_op = "";  // guarded by names
  std::string collective_group;    // guarded by names
};

Record& record() {
  static Record r;
  return r;
}

// True on a thread inside HelperThreadProgress: it marks progress only.
thread_local bool t_helper_thread = false;

}  // namespace

void mark_progress() { record().last_progress_ns.store(now_ns(), std::memory_order_relaxed); }

void set_progress_phase(const char* phase) {
  if (t_helper_thread) return mark_progress();
  record().phase.store(phase, std::memory_order_relaxed);
  mark_progress();
}

void mark_step_started(int64_t step) {
  if (t_helper_thread) return mark_progress();
  record().step.store(step, std::memory_order_relaxed);
  set_progress_phase("train step");
}

CollectiveProgress::CollectiveProgress(const char* op, const std::string& group) {
  if (t_helper_thread) {
    mark_progress();
    return;
  }
  Record& r = record();
  {
    const std::lock_guard<std::mutex> lock(r.names);
    r.collective_op = op;
    r.collective_group = group;
  }
  r.collectives_entered.fetch_add(1, std::memory_order_relaxed);
  r.in_collective.store(true, std::memory_order_relaxed);
  mark_progress();
}

CollectiveProgress::~CollectiveProgress() {
  if (t_helper_thread) {
    mark_progress();
    return;
  }
  record().in_collective.store(false, std::memory_order_relaxed);
  mark_progress();
}

HelperThreadProgress::HelperThreadProgress() { t_helper_thread = true; }
HelperThreadProgress::~HelperThreadProgress() { t_helper_thread = false; }

ProgressState progress_state() {
  Record& r = record();
  ProgressState s;
  s.step = r.step.load(std::memory_order_relaxed);
  s.collectives_entered = r.collectives_entered.load(std::memory_order_relaxed);
  s.in_collective = r.in_collective.load(std::memory_order_relaxed);
  s.phase = r.phase.load(std::memory_order_relaxed);
  if (s.in_collective) {
    const std::lock_guard<std::mutex> lock(r.names);
    s.collective = std::string(r.collective_op) + " on group '" + r.collective_group + "'";
  }
  s.seconds_since_progress = 1e-9 * static_cast<double>(now_ns() - r.last_progress_ns.load(std::memory_order_relaxed));
  return s;
}

void maybe_stop_for_test(const char* point, int64_t step, int world_rank) {
  static std::atomic<bool> stopped{false};
  const char* wanted = std::getenv("CORD_TEST_STOP_AT");
  if (wanted == nullptr || stopped.load()) return;
  const std::string expected = std::string(point) + ":" + std::to_string(step) + ":" + std::to_string(world_rank);
  if (std::string_view(wanted) != expected) return;
  stopped.store(true);
  std::raise(SIGSTOP);
}

}  // namespace cord
