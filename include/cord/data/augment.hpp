#pragma once
// Training-time augmentation of cord's log-mel features ([train.augment], off by default;
// docs/training.md#augmentation). The corpus stores features, not waveforms, so each
// augmentation is the feature-domain form of a waveform operation, on one item's
// [frames, n_mels] float32 features in the corpus's scaling
//   x = (max(log10 P, L_max - 8) + 4) / 4,   P the mel power, L_max the clip's maximum:
//
//   speed  speed perturbation by a ~ U[1 - speed, 1 + speed]: what playing the waveform a
//          times faster does. Time is compressed by a (round(frames / a) frames; frame j reads
//          time j * a), every frequency is multiplied by a (mel bin m reads the fractional
//          bin at f_m / a; above the top bin the top bin) and the power density falls by a
//          (log10 a). Linear interpolation in x on both axes.
//   noise  with probability noise_fraction, stationary white noise at an SNR drawn from
//          U[noise_snr_min_db, noise_snr_max_db], SNR as the waveform's (mean power ratio).
//          White noise of power s has the same power density in every area-normalised mel
//          band; the signal's power is the bandwidth-weighted sum of its bands' densities.
//          Each frame and bin gets that density times an exponential draw (a periodogram's
//          fluctuation), then the log scaling is applied again (a new L_max).
//   masks  SpecAugment: time_masks spans of up to time_mask_frames frames and freq_masks
//          spans of up to freq_mask_bins bins, each of uniform width and position, set to
//          the item's mean.
//
// Order: speed, noise, masks. Everything is drawn from one seed, so an augmented item is a
// function of (features, options, seed); the loader seeds it from (train.seed, epoch, corpus
// row), the same under any layout and after a resume.
// Whisper's features are not augmented: their scaling uses the 30 s window's maximum and
// their length is fixed by the window (CorpusLoader refuses the combination).
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "cord/config/config.hpp"

namespace cord::data {

using AugmentOptions = AugmentConfig;  // [train.augment] (config/config.hpp)

// The three parts, each with its draws made by the caller (tests use them directly).
// features: [frames, n_mels] float32 in the corpus's scaling (above).
at::Tensor speed_perturb(const at::Tensor& features, double factor);                     // [round(frames / a), n_mels]
at::Tensor add_noise(const at::Tensor& features, double snr_db, std::uint64_t seed);      // same shape
at::Tensor mask_spans(const at::Tensor& features, const AugmentOptions& options, std::uint64_t seed);  // same shape

// All of `options` that is on, drawn from `seed`; `features` itself when nothing is on.
at::Tensor augment_features(const at::Tensor& features, const AugmentOptions& options, std::uint64_t seed);

}  // namespace cord::data
