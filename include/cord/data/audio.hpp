#pragma once
// Audio to model input: resampling to 16 kHz (libsoxr, high quality), optional additive
// white noise at a given SNR, WAV reading (libsndfile; any rate, stereo downmixed) and
// Whisper-style 80-bin log-mel features:
//   25 ms Hann window (400 samples), 10 ms hop (160), |STFT|^2 of a centred, reflect-padded
//   signal (torch::stft), last frame dropped, Slaney-scale mel filterbank with Slaney area
//   normalisation over 0..8 kHz, log10(max(x, 1e-10)), clamped to (max - 8), then (x + 4) / 4.
//   frames = samples / 160 (integer division).
// Features are stored as IEEE float16; this header stays free of torch.
#include <cstdint>
#include <string>
#include <vector>

namespace cord::data {

inline constexpr int kSampleRate = 16000;
inline constexpr int kMelBins = 80;
inline constexpr int kFftSize = 400;
inline constexpr int kHopLength = 160;

// int16 PCM -> float in [-1, 1).
std::vector<float> pcm16_to_float(const std::vector<std::int16_t>& pcm);

// Resamples mono `samples` from `from_rate` Hz to `to_rate` Hz (soxr, SOXR_HQ). Deterministic
// for equal inputs. Throws Error on a soxr failure.
std::vector<float> resample(const std::vector<float>& samples, double from_rate, double to_rate = kSampleRate);

// Adds white Gaussian noise so that signal power / noise power = 10^(snr_db / 10); the
// noise is drawn from `seed` only.
void add_white_noise(std::vector<float>& samples, double snr_db, std::uint64_t seed);

// Reads a WAV (or any format libsndfile reads): mono float samples (channels averaged) and
// the file's sample rate. Throws UsageError naming the file when it is unreadable or empty.
std::vector<float> read_audio_file(const std::string& path, int* sample_rate);

// Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above.
double hz_to_mel(double hz);
double mel_to_hz(double mel);

// The n_mels + 2 edge frequencies (Hz) of the filterbank's triangles, equally spaced in mel
// over 0..8 kHz: triangle m rises from edge m to its centre, edge m + 1, and falls to m + 2.
std::vector<double> mel_edges_hz(int n_mels);

// The mel filterbank, [n_mels, kFftSize / 2 + 1] row-major (Slaney scale and area
// normalisation over 0..8 kHz, as Whisper's).
std::vector<float> mel_filterbank(int n_mels = kMelBins);

// Log-mel features of 16 kHz mono audio: frames = samples.size() / kHopLength rows of
// kMelBins float16 values (raw binary16 bits), row-major [frames, kMelBins]. Throws Error
// when the audio is shorter than one window (kFftSize samples) or the result is not finite.
struct LogMel {
  std::int64_t frames = 0;
  std::vector<std::uint16_t> values;  // [frames, kMelBins] binary16
};
LogMel log_mel(const std::vector<float>& samples_16k);

// Whisper's input exactly as Hugging Face's WhisperFeatureExtractor computes it: the audio
// zero-padded to `window_samples` (30 s = 480,000 at 16 kHz; Whisper's encoder reads a fixed
// window), the same STFT, filterbank and scaling as log_mel with n_mels bins (80 for Whisper
// up to large-v2, 128 for large-v3 and Qwen2-Audio), the maximum taken over the whole
// padded window. valid_frames = ceil(samples / kHopLength): the frames the extractor's
// attention mask marks (its sample mask read every kHopLength samples).
// Throws UsageError when the audio is longer than the window or empty.
struct WhisperFeatures {
  int n_mels = 0;
  std::int64_t frames = 0;        // window_samples / kHopLength (3000 for 30 s)
  std::int64_t valid_frames = 0;  // the frames that hold the audio
  std::vector<float> values;      // [n_mels, frames] row-major, float32
};
WhisperFeatures whisper_log_mel(const std::vector<float>& samples_16k, int n_mels,
                                std::int64_t window_samples = 30 * kSampleRate);

// What a Whisper encoder reads of a clip (model/whisper_encoder.hpp, "Exactness"): the
// frames of whisper_log_mel up to valid_frames + kWhisperExtraFrames (at most the whole
// window), transposed to [frames, n_mels]. Its valid outputs are those of the whole window.
inline constexpr std::int64_t kWhisperExtraFrames = 2;
struct WhisperInput {
  std::int64_t frames = 0;
  std::int64_t valid_frames = 0;
  std::vector<float> values;  // [frames, n_mels] row-major, float32
};
WhisperInput whisper_encoder_input(const std::vector<float>& samples_16k, int n_mels,
                                   std::int64_t window_samples = 30 * kSampleRate);

// float32 -> binary16 bits (round to nearest even).
std::vector<std::uint16_t> to_half(const std::vector<float>& values);

// binary16 helpers (round to nearest even), for tests and readers.
float half_to_float(std::uint16_t bits);
inline bool half_is_finite(std::uint16_t bits) { return (bits & 0x7C00u) != 0x7C00u; }  // exponent not all ones

}  // namespace cord::data
