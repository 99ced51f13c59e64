#include "cord/data/audio.hpp"

#include <sndfile.h>
#include <soxr.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>

#include "cord/core/error.hpp"
#include "cord/data/rng.hpp"

namespace cord::data {

std::vector<float> pcm16_to_float(const std::vector<std::int16_t>& pcm) {
  std::vector<float> out(pcm.size());
  for (std::size_t i = 0; i < pcm.size(); ++i) out[i] = static_cast<float>(pcm[i]) / 32768.0f;
  return out;
}

std::vector<float> resample(const std::vector<float>& samples, double from_rate, double to_rate) {
  if (from_rate == to_rate) return samples;
  const auto out_capacity = static_cast<std::size_t>(std::ceil(static_cast<double>(samples.size()) * to_rate / from_rate)) + 16;
  std::vector<float> out(out_capacity);
  std::size_t produced = 0;
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  const soxr_runtime_spec_t runtime = soxr_runtime_spec(1);  // one thread: deterministic and rank-friendly
  const soxr_error_t error = soxr_oneshot(from_rate, to_rate, 1, samples.data(), samples.size(), nullptr, out.data(),
                                          out.size(), &produced, &io, &quality, &runtime);
  if (error != nullptr) throw Error(std::string("soxr_oneshot failed: ") + error);
  out.resize(produced);
  return out;
}

void add_white_noise(std::vector<float>& samples, double snr_db, std::uint64_t seed) {
  double power = 0;
  for (const float s : samples) power += static_cast<double>(s) * s;
  power /= static_cast<double>(std::max<std::size_t>(samples.size(), 1));
  const double noise_std = std::sqrt(power / std::pow(10.0, snr_db / 10.0));
  Rng rng(seed);
  for (float& s : samples) s = static_cast<float>(s + noise_std * rng.normal());
}

std::vector<float> read_audio_file(const std::string& path, int* sample_rate) {
  SF_INFO info;
  std::memset(&info, 0, sizeof info);
  SNDFILE* file = sf_open(path.c_str(), SFM_READ, &info);
  if (file == nullptr) throw UsageError("cannot read audio file " + path + ": " + sf_strerror(nullptr));
  if (info.frames <= 0 || info.channels <= 0) {
    sf_close(file);
    throw UsageError("audio file " + path + " has no samples");
  }
  std::vector<float> interleaved(static_cast<std::size_t>(info.frames) * static_cast<std::size_t>(info.channels));
  const sf_count_t read = sf_readf_float(file, interleaved.data(), info.frames);
  sf_close(file);
  if (read <= 0) throw UsageError("audio file " + path + " has no readable samples");
  std::vector<float> mono(static_cast<std::size_t>(read));
  for (std::size_t f = 0; f < mono.size(); ++f) {
    double sum = 0;
    for (int c = 0; c < info.channels; ++c) sum += interleaved[f * static_cast<std::size_t>(info.channels) + static_cast<std::size_t>(c)];
    mono[f] = static_cast<float>(sum / info.channels);
  }
  *sample_rate = info.samplerate;
  return mono;
}

double hz_to_mel(double hz) {
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  return hz < min_log_hz ? hz / f_sp : min_log_mel + std::log(hz / min_log_hz) / logstep;
}

double mel_to_hz(double mel) {
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  return mel < min_log_mel ? mel * f_sp : min_log_hz * std::exp(logstep * (mel - min_log_mel));
}

std::vector<double> mel_edges_hz(int n_mels) {
  const double mel_max = hz_to_mel(kSampleRate / 2.0);
  std::vector<double> edges(static_cast<std::size_t>(n_mels) + 2);
  for (int m = 0; m < n_mels + 2; ++m) edges[static_cast<std::size_t>(m)] = mel_to_hz(mel_max * m / (n_mels + 1));
  return edges;
}

std::vector<float> mel_filterbank(int n_mels) {
  if (n_mels < 1) throw UsageError("mel_filterbank: n_mels must be >= 1, got " + std::to_string(n_mels));
  const int bins = kFftSize / 2 + 1;
  const double nyquist = kSampleRate / 2.0;
  const std::vector<double> mel_hz = mel_edges_hz(n_mels);
  std::vector<float> weights(static_cast<std::size_t>(n_mels) * bins, 0.0f);
  for (int m = 0; m < n_mels; ++m) {
    const double lo = mel_hz[static_cast<std::size_t>(m)], mid = mel_hz[static_cast<std::size_t>(m) + 1],
                 hi = mel_hz[static_cast<std::size_t>(m) + 2];
    const double area_norm = 2.0 / (hi - lo);  // Slaney normalisation: constant energy per band
    for (int k = 0; k < bins; ++k) {
      const double f = nyquist * k / (bins - 1);
      const double rising = (f - lo) / (mid - lo), falling = (hi - f) / (hi - mid);
      const double w = std::max(0.0, std::min(rising, falling));
      weights[static_cast<std::size_t>(m) * bins + static_cast<std::size_t>(k)] = static_cast<float>(w * area_norm);
    }
  }
  return weights;
}

namespace {

// Whisper's log-mel scaling of audio [samples] -> [n_mels, samples / kHopLength]: power
// spectrum of the centred, reflect-padded STFT (last frame dropped), mel filterbank,
// log10(max(x, 1e-10)), clamped to (max - 8), then (x + 4) / 4.
at::Tensor whisper_scaled_log_mel(const at::Tensor& audio, int n_mels) {
  const at::Tensor filters =
      torch::from_blob(mel_filterbank(n_mels).data(), {n_mels, kFftSize / 2 + 1}, torch::kFloat32).clone();
  static const at::Tensor window = torch::hann_window(kFftSize, torch::TensorOptions().dtype(torch::kFloat32));
  // [bins, frames + 1] complex -> power, last frame dropped (as Whisper does) -> [bins, frames]
  const at::Tensor spectrum = torch::stft(audio, kFftSize, kHopLength, kFftSize, window, /*center=*/true,
                                          /*pad_mode=*/"reflect", /*normalized=*/false, /*onesided=*/true,
                                          /*return_complex=*/true);
  const at::Tensor power = spectrum.slice(1, 0, spectrum.size(1) - 1).abs().pow(2);
  at::Tensor log_spec = torch::matmul(filters, power).clamp_min(1e-10).log10();  // [mels, frames]
  log_spec = torch::maximum(log_spec, log_spec.max() - 8.0);
  return (log_spec + 4.0) / 4.0;
}

}  // namespace

float half_to_float(std::uint16_t bits) {
  return c10::Half(bits, c10::Half::from_bits()).operator float();
}


LogMel log_mel(const std::vector<float>& samples_16k) {
  if (samples_16k.size() <= static_cast<std::size_t>(kFftSize)) {
    throw Error("audio of " + std::to_string(samples_16k.size()) + " samples is shorter than one " +
                std::to_string(kFftSize) + "-sample window");
  }
  const at::Tensor audio = torch::from_blob(const_cast<float*>(samples_16k.data()),
                                            {static_cast<std::int64_t>(samples_16k.size())}, torch::kFloat32);
  const at::Tensor half = whisper_scaled_log_mel(audio, kMelBins).t().contiguous().to(torch::kFloat16);  // [frames, mels]
  if (!torch::isfinite(half).all().item<bool>()) throw Error("log-mel features are not finite");
  LogMel out;
  out.frames = half.size(0);
  out.values.resize(static_cast<std::size_t>(half.numel()));
  std::memcpy(out.values.data(), half.data_ptr(), out.values.size() * sizeof(std::uint16_t));
  return out;
}

WhisperFeatures whisper_log_mel(const std::vector<float>& samples_16k, int n_mels, std::int64_t window_samples) {
  const auto samples = static_cast<std::int64_t>(samples_16k.size());
  if (samples == 0) throw UsageError("whisper_log_mel: the audio is empty");
  if (samples > window_samples) {
    throw UsageError("audio of " + std::to_string(samples) + " samples (" + std::to_string(samples / kSampleRate) +
                     " s) is longer than the encoder's window of " + std::to_string(window_samples) + " samples (" +
                     std::to_string(window_samples / kSampleRate) + " s)");
  }
  at::Tensor padded = torch::zeros({window_samples}, torch::kFloat32);
  padded.narrow(0, 0, samples).copy_(torch::from_blob(const_cast<float*>(samples_16k.data()), {samples}, torch::kFloat32));
  const at::Tensor features = whisper_scaled_log_mel(padded, n_mels).contiguous();  // [n_mels, frames]
  WhisperFeatures out;
  out.n_mels = n_mels;
  out.frames = features.size(1);
  out.valid_frames = std::min(out.frames, (samples + kHopLength - 1) / kHopLength);
  out.values.assign(features.data_ptr<float>(), features.data_ptr<float>() + features.numel());
  return out;
}

WhisperInput whisper_encoder_input(const std::vector<float>& samples_16k, int n_mels, std::int64_t window_samples) {
  const WhisperFeatures features = whisper_log_mel(samples_16k, n_mels, window_samples);
  const std::int64_t frames = std::min(features.valid_frames + kWhisperExtraFrames, features.frames);
  const at::Tensor all = torch::from_blob(const_cast<float*>(features.values.data()), {n_mels, features.frames},
                                          torch::kFloat32);
  const at::Tensor kept = all.narrow(1, 0, frames).t().contiguous();  // [frames, n_mels]
  WhisperInput out;
  out.frames = frames;
  out.valid_frames = features.valid_frames;
  out.values.assign(kept.data_ptr<float>(), kept.data_ptr<float>() + kept.numel());
  return out;
}

std::vector<std::uint16_t> to_half(const std::vector<float>& values) {
  const at::Tensor half = torch::from_blob(const_cast<float*>(values.data()), {static_cast<std::int64_t>(values.size())},
                                           torch::kFloat32)
                              .to(torch::kFloat16);
  std::vector<std::uint16_t> out(values.size());
  std::memcpy(out.data(), half.data_ptr(), out.size() * sizeof(std::uint16_t));
  return out;
}

}  // namespace cord::data
