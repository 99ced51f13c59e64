// cord-whisper-features: cord::data::whisper_log_mel on an audio file, for
// tests/hf/whisper_features_oracle.py, which compares it with Hugging Face's
// WhisperFeatureExtractor on the same samples.
//
//   cord-whisper-features AUDIO N_MELS OUT_PREFIX
//
// Reads AUDIO (any rate libsndfile reads; resampled to 16 kHz as `cord corpus import` does)
// and writes OUT_PREFIX.samples.f32 (the 16 kHz samples) and OUT_PREFIX.features.f32
// ([n_mels, frames] row-major), little-endian float32; prints {"frames", "valid_frames",
// "samples"} as JSON. Exit 2 with the message on stderr for input cord refuses (UsageError).
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "cord/core/error.hpp"
#include "cord/data/audio.hpp"

namespace {

void write_floats(const std::string& path, const std::vector<float>& values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: cord-whisper-features AUDIO N_MELS OUT_PREFIX\n";
    return 1;
  }
  try {
    int rate = 0;
    const std::vector<float> raw = cord::data::read_audio_file(argv[1], &rate);
    const std::vector<float> samples = rate == cord::data::kSampleRate ? raw : cord::data::resample(raw, rate);
    const cord::data::WhisperFeatures features = cord::data::whisper_log_mel(samples, std::stoi(argv[2]));
    write_floats(std::string(argv[3]) + ".samples.f32", samples);
    write_floats(std::string(argv[3]) + ".features.f32", features.values);
    std::printf("{\"frames\": %lld, \"valid_frames\": %lld, \"samples\": %zu}\n",
                static_cast<long long>(features.frames), static_cast<long long>(features.valid_frames), samples.size());
    return 0;
  } catch (const cord::UsageError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "cord-whisper-features: " << e.what() << "\n";
    return 1;
  }
}
