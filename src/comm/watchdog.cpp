// The hang watchdog's thread: serves other ranks' queries for this rank's progress record,
// surveys every rank once this one has made no progress for the timeout, and ends the job
// when the survey shows that no rank is progressing. See watchdog.hpp for the rules.
#include "cord/comm/watchdog.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <vector>

#include "backends.hpp"
#include "cord/comm/mpi_check.hpp"
#include "cord/comm/world.hpp"
#include "cord/core/error.hpp"
#include "cord/core/log.hpp"
#include "cord/core/progress.hpp"

namespace cord::comm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kQueryTag = 1;  // payload: int64 survey id
constexpr int kReplyTag = 2;  // payload: Reply

// One rank's progress record as sent to another rank's watchdog (plain bytes: MPI_BYTE).
struct Reply {
  int64_t survey_id = -1;  // the query it answers; -1 = no answer yet
  int64_t step = -1;
  int64_t collectives_entered = 0;
  double seconds_since_progress = 0;  // on the answering rank's own clock
  int32_t rank = -1;
  int32_t in_collective = 0;
  int32_t pid = 0;
  char host[64] = {};
  char phase[48] = {};
  char collective[96] = {};
};

void copy_text(char* destination, std::size_t capacity, const std::string& text) {
  const std::size_t n = std::min(capacity - 1, text.size());
  std::memcpy(destination, text.data(), n);
  destination[n] = '\0';
}

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

std::string fixed1(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", value);
  return text;
}

// "rank 0 (host, pid 42): step 4, in all_reduce on group 'dp' (collective #57), 9.1 s without progress"
std::string describe(const Reply& r) {
  std::string where = r.in_collective != 0 ? std::string("in ") + r.collective : std::string("in ") + r.phase;
  return "rank " + std::to_string(r.rank) + " (" + r.host + ", pid " + std::to_string(r.pid) + "): step " +
         std::to_string(r.step) + ", " + where + " (collective #" + std::to_string(r.collectives_entered) + "), " +
         fixed1(r.seconds_since_progress) + " s without progress";
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks ";
  for (std::size_t i = 0; i < ranks.size() && i < 16; ++i) text += (i > 0 ? ", " : "") + std::to_string(ranks[i]);
  if (ranks.size() > 16) text += " and " + std::to_string(ranks.size() - 16) + " more";
  return text;
}

// Which ranks stopped the job, from the ranks that answered and those that did not.
std::string culprits(const std::vector<Reply>& answered, const std::vector<int>& silent, double window_s) {
  if (!silent.empty()) {
    return rank_list(silent) + " stopped responding: no answer to the watchdog within " + fixed1(window_s) +
           " s (the process is stopped or frozen, its node is gone, or it has already left the command)";
  }
  std::vector<int> outside;
  for (const Reply& r : answered) {
    if (r.in_collective == 0) outside.push_back(r.rank);
  }
  if (!outside.empty() && outside.size() < answered.size()) {
    return rank_list(outside) + " stopped outside any collective while the others wait in one";
  }
  if (!outside.empty()) {
    return "every rank stopped outside cord's collectives (in file I/O, compute, or a stream-ordered GPU collective)";
  }
  int64_t fewest = answered.front().collectives_entered;
  int64_t most = fewest;
  for (const Reply& r : answered) {
    fewest = std::min(fewest, r.collectives_entered);
    most = std::max(most, r.collectives_entered);
  }
  if (fewest == most) {
    return "every rank waits inside collective #" + std::to_string(most) +
           ": the communication layer itself hangs (network, MPI or NCCL)";
  }
  std::vector<int> behind;
  for (const Reply& r : answered) {
    if (r.collectives_entered == fewest) behind.push_back(r.rank);
  }
  return rank_list(behind) + " fell behind: in collective #" + std::to_string(fewest) + " while others are in #" +
         std::to_string(most) + " (a mismatched collective or a deadlock)";
}

}  // namespace

struct HangWatchdog::State {
  int rank = 0;
  int size = 1;
  double timeout_s = 0;
  double period_s = 0;    // how often the thread wakes
  double window_s = 0;    // how long a survey waits for answers
  double resurvey_s = 0;  // pause between surveys while a peer is still progressing
  std::string host;
  MPI_Comm comm = MPI_COMM_NULL;  // private duplicate of the world
  ProcessGroups groups;

  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;  // guarded by mutex

  // Serving: one receive of a query from any rank is always posted.
  int64_t incoming_query = 0;
  MPI_Request query_request = MPI_REQUEST_NULL;
  std::list<std::pair<MPI_Request, std::vector<char>>> sends;  // buffers live until the send completes

  // Surveying: one reply receive per peer at a time; latest[r] is rank r's last answer.
  std::vector<Reply> latest;
  std::vector<Reply> incoming_replies;
  std::vector<MPI_Request> reply_requests;
  int64_t survey_id = 0;
  bool surveying = false;
  Clock::time_point survey_deadline{};
  Clock::time_point next_survey{};
  std::optional<Clock::time_point> grace_deadline;
  bool warned_waiting = false;

  explicit State(ProcessGroups g) : groups(std::move(g)) {}

  Reply own_record(int64_t answering) const {
    const ProgressState p = progress_state();
    Reply r;
    r.survey_id = answering;
    r.step = p.step;
    r.collectives_entered = p.collectives_entered;
    r.seconds_since_progress = p.seconds_since_progress;
    r.rank = rank;
    r.in_collective = p.in_collective ? 1 : 0;
    r.pid = static_cast<int32_t>(::getpid());
    copy_text(r.host, sizeof r.host, host);
    copy_text(r.phase, sizeof r.phase, p.phase);
    copy_text(r.collective, sizeof r.collective, p.collective);
    return r;
  }

  void send_bytes(int peer, int tag, const void* data, std::size_t n) {
    std::vector<char> buffer(static_cast<const char*>(data), static_cast<const char*>(data) + n);
    MPI_Request request = MPI_REQUEST_NULL;
    CORD_MPI_CHECK(MPI_Isend(buffer.data(), static_cast<int>(n), MPI_BYTE, peer, tag, comm, &request));
    sends.emplace_back(request, std::move(buffer));
  }

  void post_query_receive() {
    CORD_MPI_CHECK(MPI_Irecv(&incoming_query, 1, MPI_INT64_T, MPI_ANY_SOURCE, kQueryTag, comm, &query_request));
  }

  // Answers every query that has arrived, and retires completed sends.
  void serve() {
    for (;;) {
      int arrived = 0;
      MPI_Status status;
      CORD_MPI_CHECK(MPI_Test(&query_request, &arrived, &status));
      if (arrived == 0) break;
      const Reply answer = own_record(incoming_query);
      send_bytes(status.MPI_SOURCE, kReplyTag, &answer, sizeof answer);
      post_query_receive();
    }
    for (auto it = sends.begin(); it != sends.end();) {
      int done = 0;
      CORD_MPI_CHECK(MPI_Test(&it->first, &done, MPI_STATUS_IGNORE));
      it = done != 0 ? sends.erase(it) : std::next(it);
    }
  }

  // Asks `peer` for its record, unless an earlier question is still unanswered.
  void ask(int peer) {
    if (reply_requests[peer] != MPI_REQUEST_NULL) return;
    CORD_MPI_CHECK(MPI_Irecv(&incoming_replies[peer], sizeof(Reply), MPI_BYTE, peer, kReplyTag, comm,
                             &reply_requests[peer]));
    send_bytes(peer, kQueryTag, &survey_id, sizeof survey_id);
  }

  void start_survey() {
    ++survey_id;
    surveying = true;
    survey_deadline = Clock::now() + seconds(window_s);
    for (int peer = 0; peer < size; ++peer) {
      if (peer != rank) ask(peer);
    }
  }

  // Takes in the answers that arrived; a late answer to an old survey prompts a new question.
  void collect_replies() {
    for (int peer = 0; peer < size; ++peer) {
      if (reply_requests[peer] == MPI_REQUEST_NULL) continue;
      int arrived = 0;
      CORD_MPI_CHECK(MPI_Test(&reply_requests[peer], &arrived, MPI_STATUS_IGNORE));
      if (arrived == 0) continue;
      latest[peer] = incoming_replies[peer];
      if (surveying && latest[peer].survey_id != survey_id) ask(peer);
    }
  }

  bool survey_complete() const {
    for (int peer = 0; peer < size; ++peer) {
      if (peer != rank && latest[peer].survey_id != survey_id) return false;
    }
    return true;
  }

  [[noreturn]] void end_job(const std::string& message) {
    log_line(LogLevel::kError, "cord: " + message);
    abort_nccl();
    MPI_Abort(MPI_COMM_WORLD, static_cast<int>(ExitCode::kCommError));
    std::_Exit(static_cast<int>(ExitCode::kCommError));
  }

  void abort_nccl() {
#ifdef CORD_WITH_CUDA
    for (const ProcessGroup* g : {&groups.world, &groups.dp, &groups.tp}) {
      if (g->has_nccl()) detail::nccl_abort(g->nccl_comm());
    }
#endif
  }

  // NCCL errors surface asynchronously while the host may block forever on the stream.
  void poll_nccl() {
#ifdef CORD_WITH_CUDA
    for (const ProcessGroup* g : {&groups.world, &groups.dp, &groups.tp}) {
      if (!g->has_nccl()) continue;
      const std::string error = detail::nccl_async_error(g->nccl_comm());
      if (!error.empty()) {
        end_job("watchdog: NCCL reported an asynchronous error on group '" + g->name() + "' (" +
                process_identity() + "): " + error + "; ending every rank with exit code 3");
      }
    }
#endif
  }

  void decide();
  void tick();
  void run();
  void shut_down();
};

// The survey is in (or its window is over): alarm only if no rank that answered progresses.
void HangWatchdog::State::decide() {
  surveying = false;
  std::vector<Reply> answered{own_record(survey_id)};
  std::vector<int> silent;
  for (int peer = 0; peer < size; ++peer) {
    if (peer == rank) continue;
    if (latest[peer].survey_id == survey_id) {
      answered.push_back(latest[peer]);
    } else {
      silent.push_back(peer);
    }
  }
  std::sort(answered.begin(), answered.end(), [](const Reply& a, const Reply& b) { return a.rank < b.rank; });
  for (const Reply& r : answered) {
    if (r.seconds_since_progress < timeout_s) {
      if (!warned_waiting) {
        CORD_LOG(kWarn) << "watchdog: rank " << rank << " has made no progress for " << fixed1(timeout_s)
                        << " s, but " << describe(r) << " is still progressing; waiting";
        warned_waiting = true;
      }
      grace_deadline.reset();
      next_survey = Clock::now() + seconds(resurvey_s);
      return;
    }
  }
  const bool reporter = answered.front().rank == rank;
  if (reporter || (grace_deadline && Clock::now() >= *grace_deadline)) {
    std::string message = "hang watchdog: no rank has made progress for at least " + fixed1(timeout_s) +
                          " s (runtime.hang_timeout_s); " + culprits(answered, silent, window_s) + ".";
    for (std::size_t i = 0; i < answered.size() && i < 16; ++i) message += "\n  " + describe(answered[i]);
    if (answered.size() > 16) message += "\n  ... " + std::to_string(answered.size() - 16) + " more ranks";
    end_job(message + "\n  Ending every rank with exit code 3.");
  }
  if (!grace_deadline) grace_deadline = Clock::now() + seconds(window_s + 5.0);
  next_survey = *grace_deadline;
}

void HangWatchdog::State::tick() {
  serve();
  poll_nccl();
  collect_replies();
  if (progress_state().seconds_since_progress < timeout_s) {
    surveying = false;
    warned_waiting = false;
    grace_deadline.reset();
    return;
  }
  const Clock::time_point now = Clock::now();
  if (!surveying && now >= next_survey) start_survey();
  if (surveying && (survey_complete() || now >= survey_deadline)) decide();
}

void HangWatchdog::State::run() {
  try {
    std::unique_lock<std::mutex> lock(mutex);
    while (!stop) {
      wake.wait_for(lock, seconds(period_s), [&] { return stop; });
      if (stop) break;
      lock.unlock();
      tick();
      lock.lock();
    }
  } catch (const std::exception& e) {
    // An MPI failure of the watchdog's own messages: say so and keep the job running.
    log_line(LogLevel::kError, std::string("cord: hang watchdog disabled after an error (") + process_identity() +
                                   "): " + e.what());
  }
}

// After the thread has stopped: cancel the posted receives, give sends a moment, free.
void HangWatchdog::State::shut_down() {
  std::vector<MPI_Request*> receives{&query_request};
  for (MPI_Request& r : reply_requests) receives.push_back(&r);
  for (MPI_Request* r : receives) {
    if (*r == MPI_REQUEST_NULL) continue;
    MPI_Cancel(r);
    MPI_Wait(r, MPI_STATUS_IGNORE);
  }
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(1);
  for (auto& [request, buffer] : sends) {
    int done = 0;
    while (done == 0 && Clock::now() < give_up) MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done == 0) MPI_Request_free(&request);  // the send finishes in the background
  }
  sends.clear();
  if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
}

HangWatchdog::HangWatchdog(const World& world, const ProcessGroups& groups, double timeout_s)
    : state_(std::make_unique<State>(groups)) {
  if (world.thread_level() < MPI_THREAD_MULTIPLE) {
    throw CommError("runtime.hang_timeout_s > 0 needs MPI_THREAD_MULTIPLE, but this MPI library grants only level " +
                    std::to_string(world.thread_level()) + "; set runtime.hang_timeout_s = 0 to run without it");
  }
  State& s = *state_;
  s.rank = world.rank();
  s.size = world.size();
  s.host = world.host();
  s.timeout_s = timeout_s;
  s.period_s = std::clamp(timeout_s / 20.0, 0.05, 2.0);
  s.window_s = std::max(2.0, timeout_s / 5.0);
  s.resurvey_s = std::clamp(timeout_s / 4.0, s.window_s, 10.0);
  s.latest.resize(static_cast<std::size_t>(s.size));
  s.incoming_replies.resize(static_cast<std::size_t>(s.size));
  s.reply_requests.assign(static_cast<std::size_t>(s.size), MPI_REQUEST_NULL);
  CORD_MPI_CHECK(MPI_Comm_dup(world.comm(), &s.comm));
  s.post_query_receive();
  thread_ = std::thread([&s] { s.run(); });
}

HangWatchdog::~HangWatchdog() {
  {
    const std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->wake.notify_all();
  if (thread_.joinable()) thread_.join();
  state_->shut_down();
}

}  // namespace cord::comm
