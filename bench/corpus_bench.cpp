// Corpus synthesis and loading, stage by stage, on one rank (Google Benchmark):
//   generate   problem text + tokenisation
//   speak      espeak-ng through cord-tts-worker (fork per utterance)
//   resample   22.05 -> 16 kHz (soxr HQ)
//   log_mel    80-bin log-mel (torch::stft, 1 thread)
//   item       all of the above for one item (what `cord corpus synth` does per item)
//   loader     CorpusLoader::next() on the corpus named by $CORD_BENCH_CORPUS (skipped without)
// Counters (per wall-clock second: the TTS runs in another process): items/s, and
// rtf = seconds of audio produced per second of work.
// bench/run_corpus.sh runs this and the multi-rank `cord corpus synth` timings.
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>

#include "cord/data/audio.hpp"
#include "cord/data/items.hpp"
#include "cord/data/loader.hpp"

namespace {

using namespace cord;
using namespace cord::data;

struct Fixture {
  CorpusConfig config;
  ProblemGenerator generator{config};
  Tokenizer tokenizer = Tokenizer::from_generators();
  SpeechSynthesizer synthesizer;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void generate(benchmark::State& state) {
  Fixture& f = fixture();
  std::int64_t i = 0;
  for (auto _ : state) {
    const Problem p = f.generator.generate(i++);
    benchmark::DoNotOptimize(f.tokenizer.encode(p.question));
    benchmark::DoNotOptimize(f.tokenizer.encode(p.solution));
  }
  state.SetItemsProcessed(state.iterations());
}

void speak(benchmark::State& state) {
  Fixture& f = fixture();
  std::int64_t i = 0;
  double audio_s = 0;
  for (auto _ : state) {
    const Problem p = f.generator.generate(i);
    const std::vector<std::int16_t> pcm =
        f.synthesizer.speak(spoken_form(p.question, false), draw_voice(f.config, i), static_cast<unsigned>(i));
    audio_s += static_cast<double>(pcm.size()) / f.synthesizer.sample_rate();
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["rtf"] = benchmark::Counter(audio_s, benchmark::Counter::kIsRate);
}

std::vector<float> sample_audio_22k() {
  Fixture& f = fixture();
  return pcm16_to_float(f.synthesizer.speak(spoken_form(f.generator.generate(0).question, false),
                                            draw_voice(f.config, 0), 1));
}

void resample_22k_to_16k(benchmark::State& state) {
  const std::vector<float> audio = sample_audio_22k();
  for (auto _ : state) benchmark::DoNotOptimize(resample(audio, 22050, kSampleRate));
  state.SetItemsProcessed(state.iterations());
  state.counters["audio_s"] = static_cast<double>(audio.size()) / 22050;
}

void log_mel_features(benchmark::State& state) {
  const std::vector<float> audio = resample(sample_audio_22k(), 22050, kSampleRate);
  for (auto _ : state) benchmark::DoNotOptimize(log_mel(audio));
  state.SetItemsProcessed(state.iterations());
  state.counters["audio_s"] = static_cast<double>(audio.size()) / kSampleRate;
}

void item(benchmark::State& state) {
  Fixture& f = fixture();
  std::int64_t i = 0;
  StageSeconds seconds;
  for (auto _ : state) benchmark::DoNotOptimize(synthesize_item(f.config, f.generator, f.tokenizer, f.synthesizer, i++, &seconds));
  state.SetItemsProcessed(state.iterations());
  state.counters["rtf"] = benchmark::Counter(seconds.audio_seconds, benchmark::Counter::kIsRate);
}

void loader(benchmark::State& state) {
  const char* path = std::getenv("CORD_BENCH_CORPUS");
  if (path == nullptr) {
    state.SkipWithError("set CORD_BENCH_CORPUS to a corpus file");
    return;
  }
  const CorpusReader corpus(path);
  LoaderOptions options;
  options.global_batch = state.range(0);
  options.bucket_window = static_cast<int>(state.range(1));
  CorpusLoader batches(corpus, options);
  for (auto _ : state) benchmark::DoNotOptimize(batches.next());
  state.SetItemsProcessed(state.iterations() * options.global_batch);
  state.counters["batches_per_s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK(generate)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(speak)->Unit(benchmark::kMillisecond)->Iterations(200)->UseRealTime();
BENCHMARK(resample_22k_to_16k)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(log_mel_features)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(item)->Unit(benchmark::kMillisecond)->Iterations(200)->UseRealTime();
BENCHMARK(loader)->Args({16, 0})->Args({16, 8})->Unit(benchmark::kMillisecond)->Iterations(100)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);  // as `cord corpus synth` does
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
