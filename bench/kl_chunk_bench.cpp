// Full-vocabulary KL at Qwen2's vocabulary (V = 151,936): CORD's weighted reverse KL of R
// student rollouts against the teacher, forward and backward into the hidden states and the
// LM head, by the logits path (both sides' [R, T, V] logits materialised, token_terms,
// autograd) and by chunked_token_loss (chunk_rows rollouts at a time, from the hidden
// states; distill/chunked_loss.hpp). One rank, float32, d = 64 (the head's matrix products
// are the same shape as a real model's up to d; the memory wall is the vocabulary).
//
//   logits          the logits path
//   chunked/<rows>  chunked_token_loss with that many rollouts per chunk
// Counters: peak_MB, the largest rise of the process's resident set (VmHWM, reset before each
// iteration) over its size when the iteration began; loss_rel_diff, |loss - logits path's| /
// |logits path's|; grad_rel_diff, the same for the norm of the hidden states' gradient;
// loss_rel_err_f64 and grad_rel_err_f64, the same against the chunked path in float64.
// Large buffers are mmapped (M_MMAP_THRESHOLD = 1 MiB) so that freed ones leave the resident
// set and each iteration's peak is its own. Run with bench/run_kl_chunk.sh.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"
#include "cord/distill/chunked_loss.hpp"
#include "cord/distill/losses.hpp"

namespace {

using namespace cord;

constexpr int64_t kVocab = 151936, kDim = 64;
constexpr double kAlpha = 2.0, kBeta = 1.5;
constexpr int64_t kTopK = 20;

const comm::ProcessGroup* g_solo = nullptr;  // NOLINT: the benchmark process's one-rank group

int64_t env_int(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::atoll(value) : fallback;
}
// CORD_KL_BENCH_ROWS x CORD_KL_BENCH_LENGTH rollout positions (default 16 x 100: what the
// logits path fits in this machine's 23 GB).
int64_t rows() { return env_int("CORD_KL_BENCH_ROWS", 16); }
int64_t length() { return env_int("CORD_KL_BENCH_LENGTH", 100); }

// kB of a /proc/self/status field ("VmRSS", "VmHWM"); lines read whole (most are not numbers).
double status_kb(const std::string& field) {
  std::ifstream status("/proc/self/status");
  const std::string key = field + ":";
  for (std::string line; std::getline(status, line);) {
    if (line.compare(0, key.size(), key) == 0) return std::stod(line.substr(key.size()));
  }
  throw std::runtime_error("/proc/self/status has no " + field);
}

// Linux >= 4.0: "5" resets VmHWM (the peak resident set) to the current resident set.
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

struct Inputs {
  at::Tensor student_hidden, teacher_hidden, student_head, teacher_head, mask, targets;
};

const Inputs& inputs() {
  static const Inputs in = [] {
    torch::manual_seed(1);
    Inputs i;
    i.student_hidden = torch::randn({rows(), length(), kDim});
    i.teacher_hidden = torch::randn({rows(), length(), kDim});
    i.student_head = torch::randn({kVocab, kDim}) * 0.3;
    i.teacher_head = torch::randn({kVocab, kDim}) * 0.3;
    // Rollouts of different lengths: every fourth one stops at 60%.
    at::Tensor lengths = torch::full({rows()}, length(), torch::kLong);
    lengths.index_put_({torch::arange(0, rows(), 4)}, length() * 3 / 5);
    i.mask = torch::arange(length()).unsqueeze(0) < lengths.unsqueeze(1);
    i.targets = torch::randint(0, kVocab, {rows(), length()}).masked_fill(~i.mask, -1);
    return i;
  }();
  return in;
}

struct Outcome {
  double loss = 0, grad_norm = 0;
};

Outcome logits_path() {
  const Inputs& in = inputs();
  const at::Tensor h = in.student_hidden.clone().requires_grad_();
  const at::Tensor w = in.student_head.clone().requires_grad_();
  at::Tensor loss;
  {
    const at::Tensor z_s = at::matmul(h, w.t());
    at::Tensor z_t;
    {
      torch::NoGradGuard no_grad;  // the teacher's forward, as the distill stage runs it
      z_t = at::matmul(in.teacher_hidden, in.teacher_head.t());
    }
    const distill::TokenTerms terms = distill::token_terms(distill::TokenLoss::kReverseKl, z_s, z_t, in.targets,
                                                           in.mask, kAlpha, kBeta, kTopK, *g_solo);
    loss = distill::aggregate(terms.per_position, in.mask, distill::Aggregation::kSum);
  }
  loss.backward();
  return {loss.item<double>(), h.grad().norm().item<double>()};
}

Outcome chunked_path(int64_t chunk_rows) {
  const Inputs& in = inputs();
  const at::Tensor h = in.student_hidden.clone().requires_grad_();
  const at::Tensor w = in.student_head.clone().requires_grad_();
  const distill::ChunkWeights weights = [&](const at::Tensor& term, int64_t first_row) {
    return distill::cord_weights(term, in.mask.narrow(0, first_row, term.size(0)), kAlpha, kBeta, kTopK) /
           static_cast<double>(rows());
  };
  const distill::ChunkedLoss out =
      distill::chunked_token_loss(distill::TokenLoss::kReverseKl, {h, w}, {in.teacher_hidden, in.teacher_head},
                                  in.targets, kVocab, chunk_rows, weights, *g_solo);
  out.loss.backward();
  return {out.loss.item<double>(), h.grad().norm().item<double>()};
}

const Outcome& reference() {
  static const Outcome r = logits_path();
  return r;
}

// The chunked path in float64 (its temporaries are one chunk's, so it fits): the accurate
// answer both float32 paths are measured against.
const Outcome& float64_answer() {
  static const Outcome r = [] {
    const Inputs& in = inputs();
    const at::Tensor h = in.student_hidden.to(torch::kDouble).requires_grad_();
    const at::Tensor w = in.student_head.to(torch::kDouble).requires_grad_();
    const distill::ChunkWeights weights = [&](const at::Tensor& term, int64_t first_row) {
      return distill::cord_weights(term, in.mask.narrow(0, first_row, term.size(0)), kAlpha, kBeta, kTopK)
                 .to(torch::kDouble) / static_cast<double>(rows());
    };
    const distill::ChunkedLoss out = distill::chunked_token_loss(
        distill::TokenLoss::kReverseKl, {h, w},
        {in.teacher_hidden.to(torch::kDouble), in.teacher_head.to(torch::kDouble)}, in.targets, kVocab, 1, weights,
        *g_solo);
    out.loss.backward();
    return Outcome{out.loss.item<double>(), h.grad().norm().item<double>()};
  }();
  return r;
}

template <class Run>
void measure(benchmark::State& state, Run run) {
  const Outcome expected = reference();  // computed once, outside the timing
  double peak_mb = 0;
  Outcome got;
  for (auto _ : state) {
    const double before = status_kb("VmRSS");
    reset_peak();
    got = run();
    peak_mb = std::max(peak_mb, (status_kb("VmHWM") - before) / 1024.0);
  }
  state.counters["peak_MB"] = peak_mb;
  const Outcome& exact = float64_answer();
  state.counters["loss_rel_diff"] = std::abs(got.loss - expected.loss) / std::abs(expected.loss);
  state.counters["grad_rel_diff"] = std::abs(got.grad_norm - expected.grad_norm) / expected.grad_norm;
  state.counters["loss_rel_err_f64"] = std::abs(got.loss - exact.loss) / std::abs(exact.loss);
  state.counters["grad_rel_err_f64"] = std::abs(got.grad_norm - exact.grad_norm) / exact.grad_norm;
  state.counters["positions"] = static_cast<double>(rows() * length());
}

void BM_Logits(benchmark::State& state) { measure(state, [] { return logits_path(); }); }
void BM_Chunked(benchmark::State& state) {
  measure(state, [&] { return chunked_path(state.range(0)); });
}

BENCHMARK(BM_Logits)->Name("logits")->Unit(benchmark::kMillisecond)->Iterations(3)->Repetitions(3);
BENCHMARK(BM_Chunked)->Name("chunked")->Arg(1)->Arg(2)->Arg(4)->Unit(benchmark::kMillisecond)->Iterations(3)->Repetitions(3);

}  // namespace

int main(int argc, char** argv) {
  cord::comm::World world(&argc, &argv);
  const cord::comm::ProcessGroup solo = cord::comm::ProcessGroup::world(world);
  g_solo = &solo;
  mallopt(M_MMAP_THRESHOLD, 1 << 20);  // fixed (not dynamic) threshold: freed big buffers leave the RSS
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
