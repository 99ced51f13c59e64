#pragma once
// The corpus file (HDF5, schema version 3; data/README.md documents every field):
// CorpusWriter writes it collectively with parallel HDF5 — each rank its blocks of items
// as hyperslabs of ragged, offset-indexed datasets — under a temporary name in the target
// directory, then fsyncs, verifies (reopens and checks the schema and counts) and renames
// it into place. CorpusReader opens a corpus serially, validates the schema (version,
// datasets, dtypes, shapes, offsets) and reads items. Schema 2 adds a checksum per item and
// dataset: the reader checks what it holds in memory at open and each item's features as it
// reads them, so a flipped bit is an error naming the dataset and item, never a silent value.
// Schema 3 adds the feature kind (cord's log-mel or Whisper's, root attribute feature_kind),
// its mel bins (n_mels, 80 or 128 for Whisper) and each item's valid frames.
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cord/data/problems.hpp"
#include "cord/data/tokenizer.hpp"
#include "cord/h5/h5.hpp"

namespace cord::data {

// 2: per-item checksums; 3: feature kind, n_mels and valid frames. 1 and 2 are still read
// (as cord features of 80 bins, every frame valid).
inline constexpr std::int64_t kSchemaVersion = 3;
inline constexpr const char* kCorpusFormat = "cord-corpus";

// One item as stored.
struct CorpusRecord {
  std::int64_t index = 0;  // synth: the generator index; import: the manifest row
  Family family = Family::kArithmetic;
  Split split = Split::kTrain;
  int difficulty = 0;
  std::vector<std::int32_t> question, solution, answer;  // token ids
  std::int32_t speaker = -1;  // index into the file's speakers attribute; -1 = unknown (import)
  std::int32_t rate = -1;     // words per minute; -1 = unknown
  std::int32_t pitch = -1;    // 0..100; -1 = unknown
  float duration_s = 0;       // of the 16 kHz audio
  std::int64_t frames = 0;
  // The frames the encoder attends to: all of them for cord features; for Whisper's, the
  // audio's frames, the stored ones being 2 more (whisper_encoder.hpp, "Exactness").
  // 0 = frames.
  std::int64_t valid_frames = 0;
  std::vector<std::uint16_t> features;  // [frames, n_mels] binary16
};

// File-level facts written as root attributes.
struct CorpusHeader {
  std::string source;             // "synth" or "import"
  std::int64_t seed = 0;          // corpus seed (synth), 0 for import
  std::string config_toml;        // the [corpus] section it was made with (synth)
  std::vector<std::string> speakers;  // speaker id -> espeak voice name
  std::string feature_kind = "cord";  // "cord" or "whisper" (config.hpp's FeatureKind names)
  int n_mels = 80;
};

// Writes a corpus collectively over `comm`, streaming: every append() adds one block of
// records per rank, rank 0's block first, then rank 1's, ... (so appending blocks of
// consecutive items round-robin keeps the file in item order whatever the rank count).
// Datasets are chunked and grown per append; memory stays one block per rank. The file
// lives under a temporary name (".NAME.partial-PID" beside PATH) until commit() has
// flushed, fsynced, re-read and verified it and renamed it to PATH. Destroying a writer
// that was not committed (an error unwinding) closes and removes the temporary file.
class CorpusWriter {
 public:
  // Collective: creates the temporary file and writes the header and the vocabulary.
  CorpusWriter(const std::string& path, const CorpusHeader& header, const Tokenizer& tokenizer, MPI_Comm comm);
  ~CorpusWriter();
  CorpusWriter(const CorpusWriter&) = delete;
  CorpusWriter& operator=(const CorpusWriter&) = delete;

  // Collective: appends this rank's records (may be empty) after the lower ranks' ones.
  void append(const std::vector<CorpusRecord>& mine);
  // Collective: completes the file as described above; returns the number of items.
  std::int64_t commit();

 private:
  enum Count { kItems, kQuestion, kSolution, kAnswer, kFrames, kCounts };
  std::string path_;
  std::string temporary_;
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  h5::File file_;
  int n_mels_ = 80;
  std::int64_t written_[kCounts] = {};
  bool committed_ = false;
};

// One append of `mine` and a commit: the whole corpus at once.
void write_corpus(const std::string& path, const CorpusHeader& header, const Tokenizer& tokenizer,
                  const std::vector<CorpusRecord>& mine, MPI_Comm comm);

class CorpusReader {
 public:
  // Opens and validates; throws Error naming the file and the dataset or attribute at
  // fault (missing, wrong dtype or shape, bad offsets, unsupported schema version), or the
  // dataset and item whose checksum does not match. With kForVerify, a damaged item or
  // vocabulary is left for verify() to list, and the values are not checked: such a reader
  // serves verify() and the counts only (no tokenizer()).
  enum class Open { kChecked, kForVerify };
  explicit CorpusReader(const std::string& path, Open mode = Open::kChecked);
  // The same from a file image in memory (`name` stands for the file): for fuzzing.
  static CorpusReader from_image(const void* data, std::size_t size, const std::string& name, Open mode);

  const std::string& path() const { return path_; }
  std::int64_t size() const { return static_cast<std::int64_t>(family_.size()); }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  std::int64_t schema_version() const { return schema_version_; }
  const std::string& source() const { return source_; }
  std::int64_t seed() const { return seed_; }
  const std::vector<std::string>& speakers() const { return speakers_; }
  // Feature facts from the file's attributes (sample_rate, n_mels, n_fft, hop_length).
  const std::map<std::string, std::int64_t>& feature_config() const { return feature_config_; }
  // "cord" or "whisper" ("cord" before schema 3), and the mel bins of every frame.
  const std::string& feature_kind() const { return feature_kind_; }
  int n_mels() const { return n_mels_; }

  std::int64_t index(std::int64_t i) const { return index_.at(static_cast<std::size_t>(i)); }
  Family family(std::int64_t i) const { return static_cast<Family>(family_.at(static_cast<std::size_t>(i))); }
  Split split(std::int64_t i) const { return static_cast<Split>(split_.at(static_cast<std::size_t>(i))); }
  int difficulty(std::int64_t i) const { return difficulty_.at(static_cast<std::size_t>(i)); }
  float duration_s(std::int64_t i) const { return duration_.at(static_cast<std::size_t>(i)); }
  std::int64_t frames(std::int64_t i) const;
  std::int64_t valid_frames(std::int64_t i) const;  // frames(i) before schema 3
  std::vector<std::int32_t> question(std::int64_t i) const { return slice(question_, question_offsets_, i); }
  std::vector<std::int32_t> solution(std::int64_t i) const { return slice(solution_, solution_offsets_, i); }
  std::vector<std::int32_t> answer(std::int64_t i) const { return slice(answer_, answer_offsets_, i); }

  // [frames(i), n_mels()] binary16. Throws Error naming the file, dataset and item when they
  // do not match the item's checksum or a value is NaN or infinite.
  std::vector<std::uint16_t> features(std::int64_t i) const;
  // Reads every feature row (in chunks) and throws as features() does; for `inspect`.
  void check_features_finite() const;

  // Schema 2 and later; a version-1 file has nothing to verify against.
  bool has_checksums() const { return !checksums_.empty(); }
  // Every item of every checksummed dataset, features included (reads the whole file):
  // the (dataset, item) pairs that do not match their checksums (item -1: the whole
  // /tokenizer/vocab). For `cord corpus verify`; the file as stored, so not after reencode().
  struct Damage {
    std::string dataset;
    std::int64_t item = 0;
  };
  std::vector<Damage> verify() const;

  // Replaces the ids of every question and solution by convert(ids, where) ("FILE item N
  // question"): a model with another vocabulary reads the same texts in its own ids.
  // Answers stay word-level ids (they are compared as text); tokenizer() stays the file's.
  using IdConverter =
      std::function<std::vector<std::int32_t>(const std::vector<std::int32_t>&, const std::string& where)>;
  void reencode(const IdConverter& convert);

 private:
  CorpusReader(h5::File file, const std::string& name, Open mode);
  static std::vector<std::int32_t> slice(const std::vector<std::int32_t>& values,
                                         const std::vector<std::int64_t>& offsets, std::int64_t i);
  void read_feature_kind();
  void read_items();
  void read_checksums(Open mode);
  void verify_loaded() const;
  void check_values();
  std::int64_t computed_checksum(std::size_t column, std::int64_t i) const;  // of what is in memory
  std::int64_t stored_checksum(std::size_t column, std::int64_t i) const;
  std::string damage_message(std::size_t column, std::int64_t i) const;
  std::vector<std::uint16_t> raw_features(std::int64_t i) const;
  std::string path_;
  h5::File file_;
  Tokenizer tokenizer_;
  std::int64_t schema_version_ = 0;
  std::string source_;
  std::int64_t seed_ = 0;
  std::vector<std::string> speakers_;
  std::map<std::string, std::int64_t> feature_config_;
  std::vector<std::int64_t> index_;
  std::vector<std::int8_t> family_, split_;
  std::vector<std::int32_t> difficulty_;
  std::vector<float> duration_;
  std::vector<std::int32_t> question_, solution_, answer_;
  std::vector<std::int64_t> question_offsets_, solution_offsets_, answer_offsets_, frame_offsets_;
  std::string vocab_text_;               // /tokenizer/vocab as stored
  bool reencoded_ = false;
  bool vocab_damaged_ = false;  // only with Open::kForVerify
  std::uint64_t feature_storage_bytes_ = 0;  // what the file stores for /audio/features
  std::vector<std::int64_t> checksums_;  // /checksums/items, [size(), columns] row-major; empty in schema 1
  std::size_t checksum_columns_ = 0;     // 12 in schema 2, 13 (valid frames) from schema 3
  std::string feature_kind_ = "cord";
  int n_mels_ = 80;
  std::vector<std::int64_t> valid_frames_;  // empty before schema 3 (every frame valid)
};

}  // namespace cord::data
