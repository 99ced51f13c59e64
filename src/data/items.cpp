#include "cord/data/items.hpp"

#include <algorithm>
#include <chrono>
#include <sstream>

#include "cord/core/error.hpp"
#include "cord/data/audio.hpp"
#include "cord/data/rng.hpp"

namespace cord::data {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The features corpus.features names: cord's log-mel, or what a Whisper encoder reads
// (2 frames past the audio, whisper_encoder_input) with the audio's frames as valid.
CorpusRecord record_from_audio(const std::vector<float>& audio_16k, const std::string& where,
                               const CorpusConfig& config) {
  CorpusRecord r;
  try {
    if (config.features == FeatureKind::kWhisper) {
      const WhisperInput input = whisper_encoder_input(audio_16k, config.n_mels);
      r.frames = input.frames;
      r.valid_frames = input.valid_frames;
      r.features = to_half(input.values);
    } else {
      LogMel mel = log_mel(audio_16k);
      r.frames = mel.frames;
      r.features = std::move(mel.values);
    }
  } catch (const Error& e) {
    throw UsageError(where + ": " + e.what());
  }
  r.duration_s = static_cast<float>(static_cast<double>(audio_16k.size()) / kSampleRate);
  return r;
}

}  // namespace

CorpusRecord synthesize_item(const CorpusConfig& config, const ProblemGenerator& generator,
                             const Tokenizer& tokenizer, const SpeechSynthesizer& synthesizer, std::int64_t index,
                             StageSeconds* seconds) {
  StageSeconds local;
  StageSeconds& s = seconds != nullptr ? *seconds : local;
  auto t = Clock::now();
  const Problem problem = generator.generate(index);
  const std::string where = "item " + std::to_string(index);
  std::vector<std::int32_t> question = tokenizer.encode(problem.question, where + " question");
  std::vector<std::int32_t> solution = tokenizer.encode(problem.solution, where + " solution");
  std::vector<std::int32_t> answer = tokenizer.encode(problem.answer, where + " answer");
  const Voice voice = draw_voice(config, index);
  const std::string spoken = spoken_form(problem.question, config.spoken_digits);
  s.generate += since(t);

  t = Clock::now();
  const auto tts_seed = static_cast<unsigned>(
      derive_seed(static_cast<std::uint64_t>(config.seed), Stream::kTts, static_cast<std::uint64_t>(index)));
  const std::vector<std::int16_t> pcm = synthesizer.speak(spoken, voice, tts_seed);
  s.speak += since(t);

  t = Clock::now();
  std::vector<float> audio = resample(pcm16_to_float(pcm), synthesizer.sample_rate(), kSampleRate);
  if (config.noise_snr_db != 0) {
    add_white_noise(audio, config.noise_snr_db,
                    derive_seed(static_cast<std::uint64_t>(config.seed), Stream::kNoise, static_cast<std::uint64_t>(index)));
  }
  s.resample += since(t);

  t = Clock::now();
  CorpusRecord r = record_from_audio(audio, where, config);
  s.features += since(t);
  s.audio_seconds += r.duration_s;

  r.index = index;
  r.family = problem.family;
  r.split = problem.split;
  r.difficulty = problem.difficulty;
  r.question = std::move(question);
  r.solution = std::move(solution);
  r.answer = std::move(answer);
  r.speaker = voice.speaker;
  r.rate = voice.rate;
  r.pitch = voice.pitch;
  return r;
}

CorpusRecord import_item(const ManifestRow& row, const std::string& manifest_path, const Tokenizer& tokenizer,
                         std::int64_t index, const CorpusConfig& config) {
  const std::string folder = manifest_path.find('/') == std::string::npos
                                 ? "."
                                 : manifest_path.substr(0, manifest_path.rfind('/'));
  const std::string wav = !row.wav.empty() && row.wav[0] == '/' ? row.wav : folder + "/" + row.wav;
  const Family family = parse_family(row.family, row.where);
  const Split split = parse_split(row.split, row.where);
  const std::string answer = normalize_spacing(row.answer);
  const std::string solution = row.solution.empty() ? "The answer is " + answer + "." : normalize_spacing(row.solution);
  std::vector<std::int32_t> question = tokenizer.encode(normalize_spacing(row.question), row.where + " question");
  std::vector<std::int32_t> solution_ids = tokenizer.encode(solution, row.where + " solution");
  std::vector<std::int32_t> answer_ids = tokenizer.encode(answer, row.where + " answer");

  int rate = 0;
  std::vector<float> audio;
  try {
    audio = read_audio_file(wav, &rate);
  } catch (const UsageError& e) {
    throw UsageError(row.where + ": " + e.what());
  }
  CorpusRecord r = record_from_audio(resample(audio, rate, kSampleRate), row.where + " (" + wav + ")", config);
  r.index = index;
  r.family = family;
  r.split = split;
  r.difficulty = 0;
  r.question = std::move(question);
  r.solution = std::move(solution_ids);
  r.answer = std::move(answer_ids);
  return r;
}

}  // namespace cord::data
