#pragma once
// Progress of this process, as the hang watchdog (comm/watchdog.hpp) sees it.
//
// The working thread marks progress at points that a live job passes often: a training
// step starting, a collective being entered or left, an HDF5 dataset read or written, an
// eval batch. The watchdog thread reads the record to tell a rank that is slow but moving
// (a long checkpoint save or validation marks progress all along) from one that stopped.
//
// Process-wide by nature (one record per process, like the logger): every call is
// thread-safe and cheap (an atomic store, plus a short lock when a name changes).
#include <cstdint>
#include <string>

namespace cord {

// What the process is doing, for the watchdog's message.
struct ProgressState {
  int64_t step = 0;                  // the training step in progress, 1-based as the log counts; 0 before any
  int64_t collectives_entered = 0;   // collectives this process has entered so far
  bool in_collective = false;        // inside one of them now
  std::string phase;                 // "startup", "train step", "checkpoint save", ...
  std::string collective;            // "all_reduce on group 'dp'" while in_collective
  double seconds_since_progress = 0; // since the last mark, on this process's clock
};

// Marks progress without changing the phase.
void mark_progress();

// Sets the phase (a string literal: the pointer is kept) and marks progress.
void set_progress_phase(const char* phase);

// Training step `step` (1-based, as the log counts them) begins: sets the step and the
// phase "train step".
void mark_step_started(int64_t step);

// RAII: the scope is one collective call (op is a string literal such as "all_reduce").
// Entering and leaving both mark progress; the time inside does not.
class CollectiveProgress {
 public:
  CollectiveProgress(const char* op, const std::string& group);
  ~CollectiveProgress();
  CollectiveProgress(const CollectiveProgress&) = delete;
  CollectiveProgress& operator=(const CollectiveProgress&) = delete;
};

// RAII on a helper thread that works for the training thread (the asynchronous checkpoint
// writer): while it lives, this thread's collectives, phases and HDF5 transfers still mark
// progress, but leave the step, phase and collective of the record to the training thread,
// whose state the watchdog's message describes.
class HelperThreadProgress {
 public:
  HelperThreadProgress();
  ~HelperThreadProgress();
  HelperThreadProgress(const HelperThreadProgress&) = delete;
  HelperThreadProgress& operator=(const HelperThreadProgress&) = delete;
};

// A consistent copy of the record (the watchdog's view).
ProgressState progress_state();

// Test hook: CORD_TEST_STOP_AT=POINT:STEP:RANK makes world rank RANK stop itself with
// SIGSTOP, as a frozen node would, the first time it reaches POINT at STEP: "step" = step
// STEP (1-based) starting, "save" = halfway through writing the checkpoint of step STEP.
// Does nothing unless the variable names this point.
void maybe_stop_for_test(const char* point, int64_t step, int world_rank);

}  // namespace cord
