#pragma once
// Making corpus records, one item at a time:
//   synthesize_item()  generator -> spoken form -> espeak-ng (22.05 kHz) -> soxr to 16 kHz
//                      -> optional noise -> log-mel (cord's or Whisper's, config.features);
//                      a function of (config, index) only.
//   read_manifest() + import_item()  the user's own recordings: a TSV (header row) or JSONL
//                      manifest of (wav, question, answer, family, split[, solution]).
#include <cstdint>
#include <string>
#include <vector>

#include "cord/config/config.hpp"
#include "cord/data/corpus.hpp"
#include "cord/data/manifest.hpp"
#include "cord/data/problems.hpp"
#include "cord/data/speech.hpp"
#include "cord/data/tokenizer.hpp"

namespace cord::data {

// Seconds spent per stage, accumulated over calls (for benchmarks and logs).
struct StageSeconds {
  double generate = 0, speak = 0, resample = 0, features = 0;
  double audio_seconds = 0;  // duration of the audio produced
};

CorpusRecord synthesize_item(const CorpusConfig& config, const ProblemGenerator& generator,
                             const Tokenizer& tokenizer, const SpeechSynthesizer& synthesizer, std::int64_t index,
                             StageSeconds* seconds = nullptr);

// Reads, downmixes, resamples and featurises the row's audio (config.features, n_mels) and
// tokenises its text. Throws UsageError naming the row's FILE:LINE (unreadable/empty WAV,
// audio longer than Whisper's 30 s window, unknown family or split, a word outside the
// vocabulary).
CorpusRecord import_item(const ManifestRow& row, const std::string& manifest_path, const Tokenizer& tokenizer,
                         std::int64_t index, const CorpusConfig& config);

}  // namespace cord::data
