#include "cord/data/augment.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cord/core/error.hpp"
#include "cord/data/audio.hpp"
#include "cord/data/rng.hpp"

namespace cord::data {

namespace {

// The corpus's scaling x = (L + 4) / 4 with L = log10 of the mel power (data/README.md).
at::Tensor to_power(const at::Tensor& x) { return torch::pow(10.0, 4.0 * x.to(torch::kFloat64) - 4.0); }

at::Tensor from_power(const at::Tensor& power) {
  at::Tensor log_power = power.clamp_min(1e-10).log10();
  log_power = torch::maximum(log_power, log_power.max() - 8.0);
  return ((log_power + 4.0) / 4.0).to(torch::kFloat32);
}

// Reads `x` at fractional positions `at` along `dim` (clamped to the ends), linearly.
at::Tensor interpolate(const at::Tensor& x, int64_t dim, const std::vector<double>& at) {
  const int64_t last = x.size(dim) - 1;
  const auto n = static_cast<int64_t>(at.size());
  std::vector<int64_t> lo(at.size()), hi(at.size());
  std::vector<float> weight(at.size());
  for (std::size_t i = 0; i < at.size(); ++i) {
    const double p = std::clamp(at[i], 0.0, static_cast<double>(last));
    lo[i] = static_cast<int64_t>(std::floor(p));
    hi[i] = std::min(lo[i] + 1, last);
    weight[i] = static_cast<float>(p - static_cast<double>(lo[i]));
  }
  const auto index = [](std::vector<int64_t>& v) { return torch::from_blob(v.data(), {static_cast<int64_t>(v.size())}, torch::kInt64); };
  std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[static_cast<std::size_t>(dim)] = n;
  const at::Tensor w = torch::from_blob(weight.data(), {n}, torch::kFloat32).reshape(shape);
  return x.index_select(dim, index(lo)) * (1 - w) + x.index_select(dim, index(hi)) * w;
}

void check_features(const at::Tensor& x, const char* what) {
  CORD_CHECK(x.dim() == 2 && x.size(0) > 0 && x.size(1) > 0 && x.scalar_type() == torch::kFloat32,
             std::string(what) + ": features must be [frames, n_mels] float32");
}

}  // namespace

at::Tensor speed_perturb(const at::Tensor& features, double factor) {
  check_features(features, "speed_perturb");
  CORD_CHECK(factor > 0, "speed_perturb: the factor must be positive");
  const int64_t frames = features.size(0);
  const int n_mels = static_cast<int>(features.size(1));
  const int64_t out_frames = std::max<int64_t>(1, std::llround(static_cast<double>(frames) / factor));
  std::vector<double> times(static_cast<std::size_t>(out_frames));
  for (int64_t j = 0; j < out_frames; ++j) times[static_cast<std::size_t>(j)] = static_cast<double>(j) * factor;
  // Mel bin m (centre f_m) reads the fractional bin whose centre is f_m / factor.
  const std::vector<double> edges = mel_edges_hz(n_mels);
  const double mel_max = hz_to_mel(kSampleRate / 2.0);
  std::vector<double> bins(static_cast<std::size_t>(n_mels));
  for (int m = 0; m < n_mels; ++m) {
    const double source_hz = edges[static_cast<std::size_t>(m) + 1] / factor;
    bins[static_cast<std::size_t>(m)] = hz_to_mel(source_hz) / mel_max * (n_mels + 1) - 1;
  }
  const at::Tensor stretched = interpolate(interpolate(features, 0, times), 1, bins);
  return stretched - static_cast<float>(std::log10(factor) / 4.0);  // density / factor
}

at::Tensor add_noise(const at::Tensor& features, double snr_db, std::uint64_t seed) {
  check_features(features, "add_noise");
  const int64_t frames = features.size(0);
  const int n_mels = static_cast<int>(features.size(1));
  const std::vector<double> edges = mel_edges_hz(n_mels);
  std::vector<double> bandwidth(static_cast<std::size_t>(n_mels));  // each triangle's area in Hz
  for (std::size_t m = 0; m < bandwidth.size(); ++m) bandwidth[m] = (edges[m + 2] - edges[m]) / 2;
  const at::Tensor width = torch::from_blob(bandwidth.data(), {n_mels}, torch::kFloat64);
  const at::Tensor power = to_power(features);                                      // [frames, n_mels]
  const double signal_density = ((power.mean(0) * width).sum() / width.sum()).item<double>();
  const double noise_density = signal_density / std::pow(10.0, snr_db / 10.0);
  std::vector<double> draws(static_cast<std::size_t>(frames * n_mels));
  Rng rng(seed);
  for (double& d : draws) d = -std::log(1.0 - rng.uniform01());  // Exp(1)
  const at::Tensor noise = torch::from_blob(draws.data(), {frames, n_mels}, torch::kFloat64) * noise_density;
  return from_power(power + noise);
}

at::Tensor mask_spans(const at::Tensor& features, const AugmentOptions& options, std::uint64_t seed) {
  check_features(features, "mask_spans");
  at::Tensor out = features.clone();
  const float mean = features.mean().item<float>();
  Rng rng(seed);
  const auto mask = [&](int64_t dim, int count, int64_t widest) {
    const int64_t size = features.size(dim);
    for (int i = 0; i < count; ++i) {
      const int64_t width = rng.uniform(0, std::min(widest, size));
      const int64_t start = rng.uniform(0, size - width);
      out.narrow(dim, start, width).fill_(mean);
    }
  };
  mask(0, options.time_masks, options.time_mask_frames);
  mask(1, options.freq_masks, options.freq_mask_bins);
  return out;
}

at::Tensor augment_features(const at::Tensor& features, const AugmentOptions& options, std::uint64_t seed) {
  if (!options.any()) return features;
  Rng rng(seed);
  at::Tensor x = features;
  if (options.speed > 0) x = speed_perturb(x, 1.0 + options.speed * (2.0 * rng.uniform01() - 1.0));
  if (options.noise_fraction > 0 && rng.uniform01() < options.noise_fraction) {
    const double snr = options.noise_snr_min_db + (options.noise_snr_max_db - options.noise_snr_min_db) * rng.uniform01();
    x = add_noise(x, snr, rng.next());
  }
  if (options.time_masks > 0 || options.freq_masks > 0) x = mask_spans(x, options, rng.next());
  return x;
}

}  // namespace cord::data
