// Training-time augmentation (data/augment.hpp): each feature-domain operation against
// the waveform operation it stands for, computed through the real log-mel path; the
// masks; and the loader's seeding by (seed, epoch, row), whatever the dp layout.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "cord/data/audio.hpp"
#include "cord/data/augment.hpp"
#include "cord/data/loader.hpp"
#include "data_test_util.hpp"
#include "mpi_test_world.hpp"

namespace cord::data {
namespace {

using testing::TempDir;

MPI_Comm world_comm() { return cord::testing::world().comm(); }

// [frames, 80] float32 log-mel of 16 kHz audio (the corpus's features before float16).
at::Tensor features_of(const std::vector<float>& audio) {
  LogMel mel = log_mel(audio);
  return torch::from_blob(mel.values.data(), {mel.frames, kMelBins}, torch::kFloat16).to(torch::kFloat32);
}

std::vector<float> tone(double hz, double seconds) {
  std::vector<float> s(static_cast<std::size_t>(seconds * kSampleRate));
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<float>(0.3 * std::sin(2 * M_PI * hz * i / kSampleRate));
  return s;
}

// Speech-like: a 140 Hz voice with harmonics decaying with frequency, its loudness moving
// at 3 Hz, and quieter stretches between "syllables".
std::vector<float> voiced(double seconds) {
  std::vector<float> s(static_cast<std::size_t>(seconds * kSampleRate));
  for (std::size_t i = 0; i < s.size(); ++i) {
    const double t = static_cast<double>(i) / kSampleRate;
    double v = 0;
    for (int h = 1; h <= 30; ++h) v += std::sin(2 * M_PI * 140.0 * h * t + h) / h;
    s[i] = static_cast<float>(0.1 * v * (0.55 + 0.45 * std::sin(2 * M_PI * 3.0 * t)));
  }
  return s;
}

int64_t loudest_bin(const at::Tensor& features) { return features.mean(0).argmax().item<int64_t>(); }

double mean_abs_difference(const at::Tensor& a, const at::Tensor& b) {
  const int64_t frames = std::min(a.size(0), b.size(0));
  return (a.slice(0, 0, frames) - b.slice(0, 0, frames)).abs().mean().item<double>();
}

TEST(Augment, NothingOnIsTheIdentity) {
  const at::Tensor x = features_of(voiced(1.0));
  EXPECT_TRUE(torch::equal(augment_features(x, AugmentOptions{}, 7), x));
}

TEST(Augment, SpeedMovesATonesFrequencyAndShortensItsTime) {
  const at::Tensor x = features_of(tone(1000, 2.0));
  for (const double a : {0.8, 1.25}) {
    const at::Tensor y = speed_perturb(x, a);
    EXPECT_EQ(y.size(0), std::llround(static_cast<double>(x.size(0)) / a));
    EXPECT_NEAR(loudest_bin(y), loudest_bin(features_of(tone(1000 * a, 2.0))), 1) << "factor " << a;
    EXPECT_NE(loudest_bin(y), loudest_bin(x));
  }
}

TEST(Augment, SpeedIsCloseToResamplingTheWaveform) {
  const std::vector<float> audio = voiced(2.0);
  const at::Tensor x = features_of(audio);
  for (const double a : {0.9, 1.1}) {
    // Played a times faster: the samples read as if recorded at a * 16 kHz.
    const at::Tensor truth = features_of(resample(audio, a * kSampleRate, kSampleRate));
    const at::Tensor y = speed_perturb(x, a);
    EXPECT_LE(std::abs(y.size(0) - truth.size(0)), 1);
    const double error = mean_abs_difference(y, truth), unchanged = mean_abs_difference(x, truth);
    EXPECT_LT(error, 0.3 * unchanged) << "factor " << a << ": " << error << " vs unaugmented " << unchanged;
  }
}

TEST(Augment, NoiseIsCloseToAddingWhiteNoiseToTheWaveform) {
  const std::vector<float> audio = voiced(2.0);
  const at::Tensor x = features_of(audio);
  for (const double snr : {5.0, 20.0}) {
    std::vector<float> noisy = audio;
    add_white_noise(noisy, snr, 3);
    const at::Tensor truth = features_of(noisy);
    const at::Tensor y = add_noise(x, snr, 3);
    ASSERT_EQ(y.sizes(), x.sizes());
    // The spectrum averaged over time, bin by bin: the noise floor is where waveform noise puts it.
    const double error = (y.mean(0) - truth.mean(0)).abs().mean().item<double>();
    const double clean = (x.mean(0) - truth.mean(0)).abs().mean().item<double>();
    EXPECT_LT(error, 0.2 * clean) << "SNR " << snr << ": " << error << " vs clean " << clean;
  }
  EXPECT_TRUE(torch::equal(add_noise(x, 10, 1), add_noise(x, 10, 1)));
  EXPECT_FALSE(torch::equal(add_noise(x, 10, 1), add_noise(x, 10, 2)));
}

TEST(Augment, MasksSetWholeSpansToTheMeanAndNothingElse) {
  const at::Tensor x = features_of(voiced(1.0));
  AugmentOptions options;
  options.time_masks = 2;
  options.time_mask_frames = 5;
  options.freq_masks = 1;
  options.freq_mask_bins = 3;
  const float mean = x.mean().item<float>();
  int masked_in_some_draw = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const at::Tensor y = mask_spans(x, options, seed);
    const at::Tensor changed = y.ne(x);
    const at::Tensor rows = y.eq(mean).all(1), columns = y.eq(mean).all(0);
    EXPECT_LE(rows.sum().item<int64_t>(), 10);
    EXPECT_LE(columns.sum().item<int64_t>(), 3);
    // Every changed value lies in a masked row or column.
    EXPECT_FALSE((changed & ~rows.unsqueeze(1) & ~columns.unsqueeze(0)).any().item<bool>());
    masked_in_some_draw += rows.any().item<bool>() && columns.any().item<bool>();
  }
  EXPECT_GT(masked_in_some_draw, 10);
}

TEST(Augment, OneSeedOneResult) {
  const at::Tensor x = features_of(voiced(1.0));
  AugmentOptions options;
  options.speed = 0.1;
  options.noise_fraction = 1;
  options.time_masks = 1;
  EXPECT_TRUE(torch::equal(augment_features(x, options, 5), augment_features(x, options, 5)));
  EXPECT_FALSE(torch::equal(augment_features(x, options, 5), augment_features(x, options, 6)));
}

// The loader seeds an item's augmentation by (seed, epoch, row): the same under dp 1 and
// dp 2, different in the next epoch, and never applied without options.
TEST(Augment, LoaderDrawsByEpochAndRowWhateverTheLayout) {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  write_corpus(path, CorpusHeader{"synth", 1, "", {}}, Tokenizer::from_generators(),
               testing::fake_records(testing::small_config(40), 0, 40), world_comm());
  const CorpusReader corpus(path);
  LoaderOptions options;
  options.global_batch = 4;
  options.augment.speed = 0.2;
  options.augment.time_masks = 1;
  CorpusLoader single(corpus, options);
  options.dp_size = 2;
  CorpusLoader half0(corpus, options);
  options.dp_rank = 1;
  CorpusLoader half1(corpus, options);
  const auto item = [](const Batch& b, std::size_t k) {
    const int64_t frames = b.feature_lengths[static_cast<int64_t>(k)].item<int64_t>();
    return b.features[static_cast<int64_t>(k)].slice(0, 0, frames);
  };
  const Batch whole = single.next(), first = half0.next(), second = half1.next();
  ASSERT_EQ(whole.items.size(), 4u);
  for (std::size_t k = 0; k < 2; ++k) {
    EXPECT_TRUE(torch::equal(item(whole, k), item(first, k)));
    EXPECT_TRUE(torch::equal(item(whole, k + 2), item(second, k)));
  }
  const at::Tensor stored = load_batch(corpus, {whole.items[0]}).features[0];
  EXPECT_FALSE(item(whole, 0).sizes() == stored.sizes() && torch::equal(item(whole, 0), stored));
  // The same row in a later epoch is augmented afresh.
  const std::int64_t row = whole.items[0];
  for (std::int64_t batch = 1; batch < single.batches_per_epoch(); ++batch) single.next();
  for (std::int64_t batch = 0; batch < single.batches_per_epoch(); ++batch) {
    const Batch b = single.next();
    for (std::size_t k = 0; k < b.items.size(); ++k) {
      if (b.items[k] != row) continue;
      EXPECT_FALSE(item(b, k).sizes() == item(whole, 0).sizes() && torch::equal(item(b, k), item(whole, 0)));
    }
  }
}

TEST(Augment, LoaderRefusesWhisperFeatures) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  std::vector<CorpusRecord> records = testing::fake_records(testing::small_config(8), 0, 8);
  for (CorpusRecord& r : records) r.split = Split::kTrain;
  CorpusHeader header{"import", 0, "", {}};
  header.feature_kind = "whisper";
  write_corpus(path, header, Tokenizer::from_generators(), records, world_comm());
  const CorpusReader corpus(path);
  LoaderOptions options;
  options.global_batch = 4;
  options.augment.freq_masks = 1;
  const std::string message = testing::error_of<UsageError>([&] { CorpusLoader loader(corpus, options); });
  EXPECT_NE(message.find("train.augment: " + path + " holds whisper features"), std::string::npos) << message;
  options.augment = AugmentOptions{};
  EXPECT_NO_THROW(CorpusLoader(corpus, options).next());
}

}  // namespace
}  // namespace cord::data
