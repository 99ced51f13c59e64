// Speech and features: espeak-ng output is a function of (text, voice, seed) only (the
// hidden engine state is neutralised), resampling and log-mel behave as documented, and a
// synthesised item is a function of (config, index).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "cord/data/audio.hpp"
#include "cord/data/items.hpp"
#include "cord/data/speech.hpp"
#include "data_test_util.hpp"

namespace cord::data {
namespace {

using testing::error_of;

TEST(Speech, SameCallGivesBitIdenticalSamplesWhateverWasSpokenBefore) {
  // Without the fork-per-utterance isolation, espeak-ng 1.51 gives different samples
  // (even different lengths) for a repeated call; with "+f3"-style variants rand() matters too.
  const SpeechSynthesizer tts;
  EXPECT_EQ(tts.sample_rate(), 22050);
  const Voice a{"en-us", 170, 50, 0};
  const Voice b{"en-gb-x-rp+f3", 200, 30, 0};
  const std::string text_a = "Tom has twenty three apples. How many apples does he have now?";
  const std::string text_b = "Which colour does Mira like? option ay, red. option bee, blue.";
  const std::vector<std::int16_t> first = tts.speak(text_a, a, 5);
  const std::vector<std::int16_t> other = tts.speak(text_b, b, 9);
  const std::vector<std::int16_t> again = tts.speak(text_a, a, 5);
  const std::vector<std::int16_t> other_again = tts.speak(text_b, b, 9);
  ASSERT_GT(first.size(), 22050u);  // more than a second of speech
  EXPECT_EQ(first, again);
  EXPECT_EQ(other, other_again);
  EXPECT_NE(first, tts.speak(text_a, Voice{"en-us", 250, 50, 0}, 5));  // the rate is honoured
}

TEST(Speech, UnknownVoiceIsAnErrorNamingIt) {
  const SpeechSynthesizer tts;
  EXPECT_NE(error_of<Error>([&] { tts.speak("hello", Voice{"xx-nowhere", 170, 50, 0}, 1); }).find("xx-nowhere"),
            std::string::npos);
}

std::vector<float> sine(double hz, double seconds, double rate) {
  std::vector<float> s(static_cast<std::size_t>(seconds * rate));
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<float>(0.5 * std::sin(2 * M_PI * hz * i / rate));
  return s;
}

TEST(Audio, ResampleKeepsDurationAndFrequency) {
  const std::vector<float> in = sine(440, 1.0, 22050);
  const std::vector<float> out = resample(in, 22050, kSampleRate);
  EXPECT_NEAR(static_cast<double>(out.size()), 16000.0, 2.0);
  EXPECT_EQ(out, resample(in, 22050, kSampleRate));  // deterministic
  // Zero crossings in the steady middle part: 880 per second for 440 Hz.
  int crossings = 0;
  for (std::size_t i = 4001; i < 12000; ++i) crossings += (out[i - 1] < 0) != (out[i] < 0);
  EXPECT_NEAR(crossings, 440, 4);
}

TEST(Audio, MelFilterbankIsSlaneyShaped) {
  const std::vector<float> w = mel_filterbank();
  const int bins = kFftSize / 2 + 1;
  ASSERT_EQ(w.size(), static_cast<std::size_t>(kMelBins * bins));
  for (int m = 0; m < kMelBins; ++m) {
    const auto begin = w.begin() + m * bins;
    EXPECT_GT(*std::max_element(begin, begin + bins), 0.0f) << "filter " << m << " is empty";
    EXPECT_GE(*std::min_element(begin, begin + bins), 0.0f);
  }
  // Below 1 kHz Slaney mels are linear: the first filters' peaks are evenly spaced.
  auto peak = [&](int m) { return std::max_element(w.begin() + m * bins, w.begin() + (m + 1) * bins) - (w.begin() + m * bins); };
  EXPECT_LT(peak(1), peak(5));
  EXPECT_LT(peak(40), peak(70));
}

TEST(Audio, LogMelOfAToneLightsTheRightBand) {
  const std::vector<float> tone = sine(1000, 1.0, kSampleRate);
  const LogMel mel = log_mel(tone);
  EXPECT_EQ(mel.frames, 16000 / kHopLength);
  ASSERT_EQ(mel.values.size(), static_cast<std::size_t>(mel.frames * kMelBins));
  // Average over frames; the loudest band must contain 1 kHz.
  std::vector<double> mean(kMelBins, 0.0);
  for (std::int64_t f = 0; f < mel.frames; ++f) {
    for (int m = 0; m < kMelBins; ++m) mean[static_cast<std::size_t>(m)] += half_to_float(mel.values[static_cast<std::size_t>(f * kMelBins + m)]);
  }
  const int loudest = static_cast<int>(std::max_element(mean.begin(), mean.end()) - mean.begin());
  const std::vector<float> w = mel_filterbank();
  const int bin_1khz = 1000 * kFftSize / kSampleRate;  // FFT bin 25
  EXPECT_GT(w[static_cast<std::size_t>(loudest * (kFftSize / 2 + 1) + bin_1khz)], 0.0f) << "band " << loudest;
  // Whisper normalisation: values within 2 (= 8 / 4) of the maximum.
  float lo = 1e9f, hi = -1e9f;
  for (const std::uint16_t v : mel.values) {
    lo = std::min(lo, half_to_float(v));
    hi = std::max(hi, half_to_float(v));
  }
  EXPECT_LE(hi - lo, 2.0f + 1e-3f);
  EXPECT_NE(error_of<Error>([] { log_mel(std::vector<float>(100, 0.1f)); }).find("shorter than one"), std::string::npos);
}

TEST(Audio, NoiseHitsTheRequestedSnr) {
  std::vector<float> s = sine(300, 1.0, kSampleRate);
  const std::vector<float> clean = s;
  add_white_noise(s, 10.0, 42);
  double signal = 0, noise = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    signal += clean[i] * clean[i];
    noise += (s[i] - clean[i]) * (s[i] - clean[i]);
  }
  EXPECT_NEAR(10 * std::log10(signal / noise), 10.0, 0.3);
  std::vector<float> again = clean;
  add_white_noise(again, 10.0, 42);
  EXPECT_EQ(again, s);
}

TEST(Audio, HalfHelpers) {
  EXPECT_EQ(half_to_float(0x3C00), 1.0f);
  EXPECT_EQ(half_to_float(0xC000), -2.0f);
  EXPECT_TRUE(half_is_finite(0x7BFF));
  EXPECT_FALSE(half_is_finite(0x7C00));  // +inf
  EXPECT_FALSE(half_is_finite(0x7E00));  // NaN
}

}  // namespace
}  // namespace cord::data

namespace cord::data {
namespace {

TEST(Items, SynthesizedItemIsAFunctionOfConfigAndIndex) {
  CorpusConfig config = testing::small_config();
  config.rate_min = 300;  // short clips: a fast test
  config.rate_max = 350;
  const ProblemGenerator generator(config);
  const Tokenizer tokenizer = Tokenizer::from_generators();
  const SpeechSynthesizer tts;
  const CorpusRecord five = synthesize_item(config, generator, tokenizer, tts, 5);
  synthesize_item(config, generator, tokenizer, tts, 3);
  const CorpusRecord five_again = synthesize_item(config, generator, tokenizer, tts, 5);
  EXPECT_EQ(five.features, five_again.features);
  EXPECT_EQ(five.question, five_again.question);
  EXPECT_EQ(five.speaker, five_again.speaker);
  EXPECT_EQ(five.frames * kMelBins, static_cast<std::int64_t>(five.features.size()));
  EXPECT_NEAR(five.duration_s, static_cast<double>(five.frames) * kHopLength / kSampleRate, 0.011);

  CorpusConfig noisy = config;
  noisy.noise_snr_db = 5;
  const CorpusRecord five_noisy = synthesize_item(noisy, generator, tokenizer, tts, 5);
  EXPECT_EQ(five_noisy.question, five.question);
  EXPECT_EQ(five_noisy.frames, five.frames);
  EXPECT_NE(five_noisy.features, five.features);
  EXPECT_EQ(five_noisy.features, synthesize_item(noisy, generator, tokenizer, tts, 5).features);

  // Item 0 is arithmetic (family = index mod 3): reading "27" as "two seven" changes the audio.
  CorpusConfig digits = config;
  digits.spoken_digits = true;
  EXPECT_NE(synthesize_item(digits, generator, tokenizer, tts, 0).features,
            synthesize_item(config, generator, tokenizer, tts, 0).features);
}

}  // namespace
}  // namespace cord::data
