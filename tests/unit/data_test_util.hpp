#pragma once
// Helpers of the data unit tests: temporary paths, error messages, and corpus records
// with cheap deterministic fake features (no TTS), for file and loader tests.
#include <gtest/gtest.h>
#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "cord/core/error.hpp"
#include "cord/data/audio.hpp"
#include "cord/data/corpus.hpp"
#include "cord/data/problems.hpp"
#include "cord/data/rng.hpp"
#include "cord/data/tokenizer.hpp"

namespace cord::data::testing {

// A path in a fresh temporary folder, removed (with the files in it) at the end.
// POSIX calls, not std::filesystem: libtorch.so exports its own, incompatible copies of
// some std::filesystem symbols, which crash when they win symbol resolution.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/cord_data_test_XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) throw Error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    for (const std::string& name : entries()) unlink(file(name).c_str());
    rmdir(path_.c_str());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    if (DIR* dir = opendir(path_.c_str())) {
      while (const dirent* e = readdir(dir)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") names.push_back(name);
      }
      closedir(dir);
    }
    return names;
  }

 private:
  std::string path_;
};

// The message of the exception of type E that `action` must throw ("" when it does not).
template <typename E, typename Action>
std::string error_of(Action&& action) {
  try {
    action();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

inline CorpusConfig small_config(std::int64_t items = 60) {
  CorpusConfig c;
  c.seed = 11;
  c.items = items;
  // The problem and speech settings these tests were written against (not the defaults,
  // which are the main job's).
  c.validation_fraction = 0.05;
  c.test_fraction = 0.10;
  c.max_steps = 3;
  c.max_number = 100;
  c.spoken_digits = false;
  c.rate_min = 140;
  c.rate_max = 210;
  return c;
}

// Records of items [begin, end) with real text and fake features: item i has 20 + i % 13
// frames whose values depend on i only.
inline std::vector<CorpusRecord> fake_records(const CorpusConfig& config, std::int64_t begin, std::int64_t end) {
  const ProblemGenerator generator(config);
  const Tokenizer tokenizer = Tokenizer::from_generators();
  std::vector<CorpusRecord> records;
  for (std::int64_t i = begin; i < end; ++i) {
    const Problem p = generator.generate(i);
    CorpusRecord r;
    r.index = i;
    r.family = p.family;
    r.split = p.split;
    r.difficulty = p.difficulty;
    r.question = tokenizer.encode(p.question);
    r.solution = tokenizer.encode(p.solution);
    r.answer = tokenizer.encode(p.answer);
    r.frames = 20 + i % 13;
    r.duration_s = static_cast<float>(r.frames) * kHopLength / kSampleRate;
    Rng rng(derive_seed(1, Stream::kNoise, static_cast<std::uint64_t>(i)));
    for (std::int64_t k = 0; k < r.frames * kMelBins; ++k) {
      r.features.push_back(static_cast<std::uint16_t>(0x3000 + rng.uniform(0, 0x0FFF)));  // finite halves in [0.125, 1)
    }
    records.push_back(std::move(r));
  }
  return records;
}

}  // namespace cord::data::testing
