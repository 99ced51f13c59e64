#pragma once
// From corpus text to speech samples:
//   spoken_form()  what a person would say: numbers as words ("23" -> "twenty three", or
//                  "two three" in digit mode), option labels spoken as letters ("A:" ->
//                  "option ay," — espeak reads "A red" as an article), + - = as words.
//   draw_voice()   the item's speaker: base voice, variant, rate, pitch from (seed, index).
//   SpeechSynthesizer  espeak-ng in synchronous mode (22.05 kHz int16).
//
// Determinism: espeak-ng keeps hidden state across calls (static counters such as the
// pitch-flutter phase in wavegen.c, the echo buffer, ...) and draws from libc rand(), so
// the same call gives different samples depending on what was spoken before (measured:
// lengths differ by a few samples between repeats). srand() alone does not fix it. So the
// engine runs in a helper program, cord-tts-worker (tts_worker.cpp), initialised once
// (never Terminate+Initialize: 1.51 hangs); each utterance is spoken by a fork()ed child
// of the worker, which starts from the identical post-initialisation state, seeds rand()
// from the item, replies through a pipe and exits.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cord/config/config.hpp"

namespace cord::data {

std::string spoken_form(const std::string& text, bool digit_by_digit);
// "twenty three"; n in [0, 999999].
std::string number_in_words(std::int64_t n);

struct Voice {
  std::string name;  // espeak-ng voice name, e.g. "en-us+f3"
  int rate = 175;    // words per minute
  int pitch = 50;    // 0..100
  int speaker = 0;   // index into speaker_names(config)
};

// Every base voice x variant of the config, in speaker-id order ("en-us", "en-us+m1", ...).
std::vector<std::string> speaker_names(const CorpusConfig& config);
Voice draw_voice(const CorpusConfig& config, std::int64_t index);

class SpeechSynthesizer {
 public:
  // Starts a cord-tts-worker ($CORD_TTS_WORKER, else beside the running program, else the
  // build's copy). Throws Error when it is missing or espeak-ng cannot start.
  SpeechSynthesizer();
  int sample_rate() const { return sample_rate_; }
  // Speaks `text` from the engine's pristine state with libc rand() seeded by `rand_seed`.
  // Throws Error naming the voice when espeak-ng rejects it, or when synthesis fails.
  std::vector<std::int16_t> speak(const std::string& text, const Voice& voice, unsigned rand_seed) const;

 private:
  struct Worker;                    // the child process and its pipes
  std::shared_ptr<Worker> worker_;  // shared by copies; the worker ends with the last one
  int sample_rate_ = 0;
};

}  // namespace cord::data
