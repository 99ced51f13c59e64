#include "cord/data/corpus.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "cord/comm/mpi_check.hpp"
#include "cord/core/checksum.hpp"
#include "cord/core/error.hpp"
#include "cord/core/files.hpp"
#include "cord/data/audio.hpp"

namespace cord::data {
namespace {

using h5::Dtype;

std::string join(const std::vector<std::string>& parts, char separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : std::string(1, separator)) + parts[i];
  return out;
}

std::vector<std::string> split_on(const std::string& text, char separator) {
  std::vector<std::string> parts;
  if (text.empty()) return parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, separator)) parts.push_back(part);
  return parts;
}

std::string family_list() {
  std::vector<std::string> names;
  for (int f = 0; f < kFamilyCount; ++f) names.emplace_back(family_name(static_cast<Family>(f)));
  return join(names, ',');
}

std::string split_list() {
  std::vector<std::string> names;
  for (int s = 0; s < kSplitCount; ++s) names.emplace_back(split_name(static_cast<Split>(s)));
  return join(names, ',');
}

// Rows per chunk of the growing datasets: ~0.6 MB of features, ~32 kB of ids.
constexpr std::uint64_t kChunkRows = 4096;

// Schema 2: /checksums/items [items, kChecksumColumns] int64 holds, per item, the
// content_checksum (core/checksum.hpp) of the item's part of each of these datasets, in
// this order (the root attribute checksum_columns lists them). The vocabulary's checksum is
// the root attribute vocab_checksum. Both are int64 bit patterns of the uint64 checksums.
// Schema 3 appends /items/valid_frames.
constexpr const char* kChecksumColumns[] = {
    "/items/index",  "/items/family",     "/items/split",           "/items/difficulty",
    "/items/speaker", "/items/rate",      "/items/pitch",           "/items/duration_s",
    "/text/question_tokens", "/text/solution_tokens", "/text/answer_tokens", "/audio/features",
    "/items/valid_frames"};
constexpr std::size_t kColumnCount = std::size(kChecksumColumns);
constexpr std::size_t kSchema2Columns = kColumnCount - 1;
enum Column : std::size_t { kIndex, kFamily, kSplit, kDifficulty, kSpeaker, kRate, kPitch, kDuration, kQuestionIds,
                            kSolutionIds, kAnswerIds, kFeatures, kValidFrames };

// The root attribute checksum_columns of a file with `columns` columns.
std::string checksum_column_list(std::size_t columns) {
  return join({std::begin(kChecksumColumns), std::begin(kChecksumColumns) + columns}, ',');
}

std::int64_t valid_frames_of(const CorpusRecord& r) { return r.valid_frames > 0 ? r.valid_frames : r.frames; }

template <typename T>
std::int64_t checksum_of(const T* values, std::size_t count) {
  return static_cast<std::int64_t>(content_checksum(values, count * sizeof(T)));
}
template <typename T>
std::int64_t checksum_of(T value) {
  return checksum_of(&value, 1);
}

// One row of /checksums/items.
std::array<std::int64_t, kColumnCount> record_checksums(const CorpusRecord& r) {
  return {checksum_of(r.index),
          checksum_of(static_cast<std::int8_t>(r.family)),
          checksum_of(static_cast<std::int8_t>(r.split)),
          checksum_of(static_cast<std::int32_t>(r.difficulty)),
          checksum_of(r.speaker),
          checksum_of(r.rate),
          checksum_of(r.pitch),
          checksum_of(r.duration_s),
          checksum_of(r.question.data(), r.question.size()),
          checksum_of(r.solution.data(), r.solution.size()),
          checksum_of(r.answer.data(), r.answer.size()),
          checksum_of(r.features.data(), r.features.size()),
          checksum_of(valid_frames_of(r))};
}

// The temporary name, chosen by rank 0 (its pid) and broadcast: every rank must agree.
std::string agreed_temporary_name(const std::string& path, MPI_Comm comm) {
  long id = static_cast<long>(getpid());
  CORD_MPI_CHECK(MPI_Bcast(&id, 1, MPI_LONG, 0, comm));
  return temporary_name(path, id);
}

}  // namespace

CorpusWriter::CorpusWriter(const std::string& path, const CorpusHeader& header, const Tokenizer& tokenizer,
                           MPI_Comm comm)
    : path_(path), temporary_(agreed_temporary_name(path, comm)), comm_(comm),
      file_(h5::File::create(temporary_, comm)) {
  CORD_MPI_CHECK(MPI_Comm_rank(comm, &rank_));
  CORD_MPI_CHECK(MPI_Comm_size(comm, &size_));
  CORD_CHECK(header.feature_kind == "cord" || header.feature_kind == "whisper",
             "corpus feature kind '" + header.feature_kind + "' is neither cord nor whisper");
  CORD_CHECK(header.feature_kind == "whisper" || header.n_mels == kMelBins, "cord features have 80 mel bins");
  n_mels_ = header.n_mels;
  h5::File& f = file_;
  for (const char* group : {"/items", "/text", "/audio", "/tokenizer", "/checksums"}) f.create_group(group);
  f.set_attribute("/", "format", std::string(kCorpusFormat));
  f.set_attribute("/", "schema_version", kSchemaVersion);
  f.set_attribute("/", "source", header.source);
  f.set_attribute("/", "seed", header.seed);
  f.set_attribute("/", "config", header.config_toml);
  f.set_attribute("/", "families", family_list());
  f.set_attribute("/", "splits", split_list());
  f.set_attribute("/", "speakers", join(header.speakers, ','));
  f.set_attribute("/", "sample_rate", std::int64_t{kSampleRate});
  f.set_attribute("/", "n_mels", std::int64_t{header.n_mels});
  f.set_attribute("/", "feature_kind", header.feature_kind);
  f.set_attribute("/", "n_fft", std::int64_t{kFftSize});
  f.set_attribute("/", "win_length", std::int64_t{kFftSize});
  f.set_attribute("/", "hop_length", std::int64_t{kHopLength});
  f.set_attribute("/", "mel_scale", std::string("slaney"));
  f.set_attribute("/", "log_mel",
                  std::string(header.feature_kind == "whisper"
                                  ? "WhisperFeatureExtractor's: the audio zero-padded to 30 s, maximum over the window"
                                  : "whisper: log10(max(mel, 1e-10)), max(x, max - 8), (x + 4) / 4"));

  f.create_dataset("/items/index", Dtype::kInt64, {0}, kChunkRows);
  f.create_dataset("/items/family", Dtype::kInt8, {0}, kChunkRows);
  f.create_dataset("/items/split", Dtype::kInt8, {0}, kChunkRows);
  for (const char* name : {"/items/difficulty", "/items/speaker", "/items/rate", "/items/pitch"}) {
    f.create_dataset(name, Dtype::kInt32, {0}, kChunkRows);
  }
  f.create_dataset("/items/duration_s", Dtype::kFloat32, {0}, kChunkRows);
  f.create_dataset("/items/valid_frames", Dtype::kInt64, {0}, kChunkRows);
  for (const char* name : {"/text/question_tokens", "/text/solution_tokens", "/text/answer_tokens"}) {
    f.create_dataset(name, Dtype::kInt32, {0}, kChunkRows);
  }
  f.create_dataset("/audio/features", Dtype::kFloat16, {0, static_cast<std::uint64_t>(n_mels_)}, kChunkRows);
  // Offsets start as [0]; each append adds one end offset per item.
  const std::int64_t zero = 0;
  for (const char* name : {"/text/question_offsets", "/text/solution_offsets", "/text/answer_offsets",
                           "/audio/frame_offsets"}) {
    f.create_dataset(name, Dtype::kInt64, {1}, kChunkRows);
    f.write_rows(name, 0, rank_ == 0 ? 1 : 0, &zero, Dtype::kInt64);
  }
  f.create_dataset("/checksums/items", Dtype::kInt64, {0, kColumnCount}, kChunkRows);
  f.set_attribute("/", "checksum_columns", checksum_column_list(kColumnCount));
  const std::string vocab = join(tokenizer.vocab(), '\n');
  f.set_attribute("/", "vocab_checksum", checksum_of(vocab.data(), vocab.size()));
  f.create_dataset("/tokenizer/vocab", Dtype::kUInt8, {vocab.size()});
  f.write_rows("/tokenizer/vocab", 0, rank_ == 0 ? vocab.size() : 0, vocab.data(), Dtype::kUInt8);
}

CorpusWriter::~CorpusWriter() {
  if (committed_) return;
  // An error is unwinding. Every rank gets here together only when the error was agreed
  // (run_agreed); otherwise the job is being aborted and the close may not complete —
  // either way the file keeps its temporary name, which no reader mistakes for a corpus.
  try {
    file_.close();
  } catch (const std::exception&) {
  }
  if (rank_ == 0) std::remove(temporary_.c_str());
}

void CorpusWriter::append(const std::vector<CorpusRecord>& mine) {
  std::int64_t local[kCounts] = {};
  local[kItems] = static_cast<std::int64_t>(mine.size());
  for (const CorpusRecord& r : mine) {
    local[kQuestion] += static_cast<std::int64_t>(r.question.size());
    local[kSolution] += static_cast<std::int64_t>(r.solution.size());
    local[kAnswer] += static_cast<std::int64_t>(r.answer.size());
    local[kFrames] += r.frames;
    CORD_CHECK(r.features.size() == static_cast<std::size_t>(r.frames * n_mels_), "record features/frames mismatch");
    CORD_CHECK(valid_frames_of(r) <= r.frames, "record valid frames exceed its frames");
  }
  std::vector<std::int64_t> all(static_cast<std::size_t>(kCounts) * static_cast<std::size_t>(size_));
  CORD_MPI_CHECK(MPI_Allgather(local, kCounts, MPI_INT64_T, all.data(), kCounts, MPI_INT64_T, comm_));
  std::int64_t before[kCounts], after[kCounts];  // this rank's first row; rows after the append
  for (int k = 0; k < kCounts; ++k) {
    before[k] = after[k] = written_[k];
    for (int r = 0; r < size_; ++r) {
      const std::int64_t n = all[static_cast<std::size_t>(r) * kCounts + static_cast<std::size_t>(k)];
      if (r < rank_) before[k] += n;
      after[k] += n;
    }
  }
  if (after[kItems] == written_[kItems]) return;  // nobody has records: nothing to do (agreed)

  h5::File& f = file_;
  const auto first = static_cast<std::uint64_t>(before[kItems]);
  const auto count = static_cast<std::uint64_t>(local[kItems]);
  auto per_item = [&](const char* name, Dtype dtype, auto get) {
    std::vector<decltype(get(std::declval<const CorpusRecord&>()))> values;
    for (const CorpusRecord& r : mine) values.push_back(get(r));
    f.set_rows(name, static_cast<std::uint64_t>(after[kItems]));
    f.write_rows(name, first, count, values.data(), dtype);
  };
  per_item("/items/index", Dtype::kInt64, [](const CorpusRecord& r) { return r.index; });
  per_item("/items/family", Dtype::kInt8, [](const CorpusRecord& r) { return static_cast<std::int8_t>(r.family); });
  per_item("/items/split", Dtype::kInt8, [](const CorpusRecord& r) { return static_cast<std::int8_t>(r.split); });
  per_item("/items/difficulty", Dtype::kInt32, [](const CorpusRecord& r) { return static_cast<std::int32_t>(r.difficulty); });
  per_item("/items/speaker", Dtype::kInt32, [](const CorpusRecord& r) { return r.speaker; });
  per_item("/items/rate", Dtype::kInt32, [](const CorpusRecord& r) { return r.rate; });
  per_item("/items/pitch", Dtype::kInt32, [](const CorpusRecord& r) { return r.pitch; });
  per_item("/items/duration_s", Dtype::kFloat32, [](const CorpusRecord& r) { return r.duration_s; });
  per_item("/items/valid_frames", Dtype::kInt64, [](const CorpusRecord& r) { return valid_frames_of(r); });
  std::vector<std::int64_t> checksums;
  checksums.reserve(mine.size() * kColumnCount);
  for (const CorpusRecord& r : mine) {
    const auto row = record_checksums(r);
    checksums.insert(checksums.end(), row.begin(), row.end());
  }
  f.set_rows("/checksums/items", static_cast<std::uint64_t>(after[kItems]));
  f.write_rows("/checksums/items", first, count, checksums.data(), Dtype::kInt64);

  // Ragged data: values at this rank's rows, then one end offset per item. `size_of`
  // is an item's number of rows (tokens, or frames for the features).
  auto ragged = [&](const std::string& values_name, const std::string& offsets_name, Dtype dtype, Count which,
                    const void* values, auto size_of) {
    f.set_rows(values_name, static_cast<std::uint64_t>(after[which]));
    f.write_rows(values_name, static_cast<std::uint64_t>(before[which]), static_cast<std::uint64_t>(local[which]),
                 values, dtype);
    std::vector<std::int64_t> ends;
    std::int64_t position = before[which];
    for (const CorpusRecord& r : mine) ends.push_back(position += size_of(r));
    f.set_rows(offsets_name, static_cast<std::uint64_t>(after[kItems]) + 1);
    f.write_rows(offsets_name, first + 1, count, ends.data(), Dtype::kInt64);
  };
  auto tokens = [&](std::vector<std::int32_t> CorpusRecord::*member) {
    std::vector<std::int32_t> values;
    for (const CorpusRecord& r : mine) values.insert(values.end(), (r.*member).begin(), (r.*member).end());
    return values;
  };
  const auto token_count = [](std::vector<std::int32_t> CorpusRecord::*member) {
    return [member](const CorpusRecord& r) { return static_cast<std::int64_t>((r.*member).size()); };
  };
  ragged("/text/question_tokens", "/text/question_offsets", Dtype::kInt32, kQuestion,
         tokens(&CorpusRecord::question).data(), token_count(&CorpusRecord::question));
  ragged("/text/solution_tokens", "/text/solution_offsets", Dtype::kInt32, kSolution,
         tokens(&CorpusRecord::solution).data(), token_count(&CorpusRecord::solution));
  ragged("/text/answer_tokens", "/text/answer_offsets", Dtype::kInt32, kAnswer, tokens(&CorpusRecord::answer).data(),
         token_count(&CorpusRecord::answer));
  std::vector<std::uint16_t> features;
  features.reserve(static_cast<std::size_t>(local[kFrames] * n_mels_));
  for (const CorpusRecord& r : mine) features.insert(features.end(), r.features.begin(), r.features.end());
  ragged("/audio/features", "/audio/frame_offsets", Dtype::kFloat16, kFrames, features.data(),
         [](const CorpusRecord& r) { return r.frames; });
  for (int k = 0; k < kCounts; ++k) written_[k] = after[k];
}

std::int64_t CorpusWriter::commit() {
  if (written_[kItems] == 0) throw UsageError("refusing to write an empty corpus to " + path_);
  file_.close();
  // Rank 0 makes it durable, checks it, and only then gives it its real name.
  int committed = 0;
  std::string failure;
  if (rank_ == 0) {
    try {
      fsync_path(temporary_, false);
      const CorpusReader check(temporary_);
      if (check.size() != written_[kItems]) {
        throw Error("verification of " + temporary_ + " failed: " + std::to_string(check.size()) +
                    " items, expected " + std::to_string(written_[kItems]));
      }
      if (std::rename(temporary_.c_str(), path_.c_str()) != 0) {
        throw Error("cannot rename " + temporary_ + " to " + path_ + ": " + std::strerror(errno));
      }
      committed = 1;
      fsync_path(directory_of(path_), true);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  CORD_MPI_CHECK(MPI_Bcast(&committed, 1, MPI_INT, 0, comm_));
  committed_ = committed != 0;
  if (!committed_) {
    if (rank_ == 0) {
      std::remove(temporary_.c_str());
      throw Error(failure);
    }
    throw Error("rank 0 could not finish the corpus file " + path_ + " (its message says why)");
  }
  return written_[kItems];
}

void write_corpus(const std::string& path, const CorpusHeader& header, const Tokenizer& tokenizer,
                  const std::vector<CorpusRecord>& mine, MPI_Comm comm) {
  CorpusWriter writer(path, header, tokenizer, comm);
  writer.append(mine);
  writer.commit();
}

// --- reading ------------------------------------------------------------------------

namespace {

void require_dataset(const h5::File& file, const std::string& name, Dtype dtype,
                     const std::vector<std::int64_t>& shape) {  // -1 = any length
  const h5::DatasetInfo info = file.dataset_info(name);
  if (info.dtype != dtype) {
    throw Error(file.path() + " dataset " + name + ": dtype " + h5::to_string(info.dtype) + ", expected " +
                h5::to_string(dtype));
  }
  bool ok = info.shape.size() == shape.size();
  for (std::size_t d = 0; ok && d < shape.size(); ++d) {
    ok = shape[d] < 0 || static_cast<std::int64_t>(info.shape[d]) == shape[d];
  }
  if (!ok) {
    auto format = [](const auto& dims) {
      std::string s = "[";
      for (std::size_t d = 0; d < dims.size(); ++d) {
        s += (d == 0 ? "" : ", ") + (static_cast<std::int64_t>(dims[d]) < 0 ? std::string("*") : std::to_string(dims[d]));
      }
      return s + "]";
    };
    throw Error(file.path() + " dataset " + name + ": shape " + format(info.shape) + ", expected " + format(shape));
  }
}

std::vector<std::int64_t> read_offsets(const h5::File& file, const std::string& name, std::int64_t items,
                                       std::int64_t values) {
  require_dataset(file, name, Dtype::kInt64, {items + 1});
  std::vector<std::int64_t> offsets = file.read_all<std::int64_t>(name);
  if (offsets.front() != 0) throw Error(file.path() + " dataset " + name + ": must start at 0");
  for (std::size_t i = 1; i < offsets.size(); ++i) {
    if (offsets[i] < offsets[i - 1]) {
      throw Error(file.path() + " dataset " + name + ": decreases at item " + std::to_string(i - 1));
    }
  }
  if (offsets.back() != values) {
    throw Error(file.path() + " dataset " + name + ": ends at " + std::to_string(offsets.back()) + " but the values have " +
                std::to_string(values) + " rows");
  }
  return offsets;
}

}  // namespace

CorpusReader::CorpusReader(const std::string& path, Open mode)
    : CorpusReader(h5::File::open_read_only(path), path, mode) {}

CorpusReader CorpusReader::from_image(const void* data, std::size_t size, const std::string& name, Open mode) {
  return CorpusReader(h5::File::open_image(data, size, name), name, mode);
}

CorpusReader::CorpusReader(h5::File file, const std::string& path, Open mode) : path_(path), file_(std::move(file)) {
  const h5::File& f = file_;
  if (!f.has_attribute("/", "format") || f.attribute_string("/", "format") != kCorpusFormat) {
    throw Error(path + ": not a cord corpus (root attribute format is not '" + kCorpusFormat + "')");
  }
  schema_version_ = f.attribute_int("/", "schema_version");
  if (schema_version_ < 1 || schema_version_ > kSchemaVersion) {
    throw Error(path + ": schema_version " + std::to_string(schema_version_) + " is not supported (this cord reads 1 to " +
                std::to_string(kSchemaVersion) + ")");
  }
  source_ = f.attribute_string("/", "source");
  seed_ = f.attribute_int("/", "seed");
  speakers_ = split_on(f.attribute_string("/", "speakers"), ',');
  for (const char* key : {"sample_rate", "n_mels", "n_fft", "win_length", "hop_length"}) {
    feature_config_[key] = f.attribute_int("/", key);
  }
  read_feature_kind();
  if (f.attribute_string("/", "families") != family_list()) {
    throw Error(path + ": root attribute families is '" + f.attribute_string("/", "families") + "', expected '" +
                family_list() + "'");
  }
  read_items();
  if (schema_version_ >= 2) read_checksums(mode);
  if (mode == Open::kForVerify) return;
  if (schema_version_ >= 2) verify_loaded();
  check_values();
}

// feature_kind and n_mels (schema 3; before it, cord's 80 bins), and the STFT every kind shares.
void CorpusReader::read_feature_kind() {
  const h5::File& f = file_;
  if (schema_version_ >= 3) feature_kind_ = f.attribute_string("/", "feature_kind");
  if (feature_kind_ != "cord" && feature_kind_ != "whisper") {
    throw Error(path_ + ": root attribute feature_kind is '" + feature_kind_ + "', neither cord nor whisper");
  }
  const std::int64_t n_mels = feature_config_["n_mels"];
  if ((feature_kind_ == "cord" && n_mels != kMelBins) || n_mels < 1 || n_mels > 512) {
    throw Error(path_ + ": root attribute n_mels is " + std::to_string(n_mels) + ", not valid for " + feature_kind_ +
                " features (cord's have 80)");
  }
  n_mels_ = static_cast<int>(n_mels);
  if (feature_config_["sample_rate"] != kSampleRate || feature_config_["hop_length"] != kHopLength ||
      feature_config_["n_fft"] != kFftSize) {
    throw Error(path_ + ": feature config (sample_rate, n_fft, hop_length) differs from cord's 16000, 400, 160");
  }
}

// The per-item datasets, the token ids with their offsets, the feature offsets, the vocabulary.
void CorpusReader::read_items() {
  const h5::File& f = file_;
  const h5::DatasetInfo family_info = f.dataset_info("/items/family");
  if (family_info.shape.size() != 1) throw Error(path_ + " dataset /items/family: must be one-dimensional");
  const auto n = static_cast<std::int64_t>(family_info.shape[0]);
  require_dataset(f, "/items/index", Dtype::kInt64, {n});
  require_dataset(f, "/items/family", Dtype::kInt8, {n});
  require_dataset(f, "/items/split", Dtype::kInt8, {n});
  require_dataset(f, "/items/difficulty", Dtype::kInt32, {n});
  require_dataset(f, "/items/duration_s", Dtype::kFloat32, {n});
  for (const char* name : {"/items/speaker", "/items/rate", "/items/pitch"}) require_dataset(f, name, Dtype::kInt32, {n});
  index_ = f.read_all<std::int64_t>("/items/index");
  family_ = f.read_all<std::int8_t>("/items/family");
  split_ = f.read_all<std::int8_t>("/items/split");
  difficulty_ = f.read_all<std::int32_t>("/items/difficulty");
  duration_ = f.read_all<float>("/items/duration_s");
  auto text = [&](const std::string& what, std::vector<std::int32_t>& values, std::vector<std::int64_t>& offsets) {
    const std::string values_name = "/text/" + what + "_tokens";
    require_dataset(f, values_name, Dtype::kInt32, {-1});
    values = f.read_all<std::int32_t>(values_name);
    offsets = read_offsets(f, "/text/" + what + "_offsets", n, static_cast<std::int64_t>(values.size()));
  };
  text("question", question_, question_offsets_);
  text("solution", solution_, solution_offsets_);
  text("answer", answer_, answer_offsets_);
  require_dataset(f, "/audio/features", Dtype::kFloat16, {-1, n_mels_});
  const h5::DatasetInfo features = f.dataset_info("/audio/features");
  const auto feature_rows = static_cast<std::int64_t>(features.shape[0]);
  feature_storage_bytes_ = features.storage_bytes;
  frame_offsets_ = read_offsets(f, "/audio/frame_offsets", n, feature_rows);
  if (schema_version_ >= 3) {
    require_dataset(f, "/items/valid_frames", Dtype::kInt64, {n});
    valid_frames_ = f.read_all<std::int64_t>("/items/valid_frames");
  }
  require_dataset(f, "/tokenizer/vocab", Dtype::kUInt8, {-1});
  const std::vector<std::uint8_t> vocab_bytes = f.read_all<std::uint8_t>("/tokenizer/vocab");
  vocab_text_.assign(vocab_bytes.begin(), vocab_bytes.end());
}

void CorpusReader::read_checksums(Open mode) {
  const h5::File& f = file_;
  checksum_columns_ = schema_version_ >= 3 ? kColumnCount : kSchema2Columns;
  const std::string expected = checksum_column_list(checksum_columns_);
  if (!f.has_attribute("/", "checksum_columns") || f.attribute_string("/", "checksum_columns") != expected) {
    throw Error(path_ + ": root attribute checksum_columns is missing or not '" + expected + "' (schema version " +
                std::to_string(schema_version_) + ")");
  }
  require_dataset(f, "/checksums/items", Dtype::kInt64, {size(), static_cast<std::int64_t>(checksum_columns_)});
  checksums_ = f.read_all<std::int64_t>("/checksums/items");
  const std::int64_t vocab = checksum_of(vocab_text_.data(), vocab_text_.size());
  vocab_damaged_ = f.attribute_int("/", "vocab_checksum") != vocab;
  if (vocab_damaged_ && mode == Open::kChecked) {
    throw Error(path_ + " dataset /tokenizer/vocab: does not match its checksum: the file is damaged");
  }
}

std::int64_t CorpusReader::computed_checksum(std::size_t column, std::int64_t i) const {
  const auto k = static_cast<std::size_t>(i);
  auto ids = [&](const std::vector<std::int32_t>& values, const std::vector<std::int64_t>& offsets) {
    const auto begin = static_cast<std::size_t>(offsets[k]);
    return checksum_of(values.data() + begin, static_cast<std::size_t>(offsets[k + 1]) - begin);
  };
  switch (column) {
    case kIndex: return checksum_of(index_[k]);
    case kFamily: return checksum_of(family_[k]);
    case kSplit: return checksum_of(split_[k]);
    case kDifficulty: return checksum_of(difficulty_[k]);
    case kDuration: return checksum_of(duration_[k]);
    case kQuestionIds: return ids(question_, question_offsets_);
    case kSolutionIds: return ids(solution_, solution_offsets_);
    case kAnswerIds: return ids(answer_, answer_offsets_);
    case kValidFrames: return checksum_of(valid_frames_[k]);
    default: throw Error(std::string("corpus checksum column ") + kChecksumColumns[column] + " is not held in memory");
  }
}

std::int64_t CorpusReader::stored_checksum(std::size_t column, std::int64_t i) const {
  return checksums_[static_cast<std::size_t>(i) * checksum_columns_ + column];
}

std::string CorpusReader::damage_message(std::size_t column, std::int64_t i) const {
  return path_ + " dataset " + kChecksumColumns[column] + ": item " + std::to_string(i) +
         " does not match its checksum: the file is damaged (cord corpus verify " + path_ + " lists every damaged item)";
}

// What a run holds in memory is cheap to check at open; features are checked as they are read.
void CorpusReader::verify_loaded() const {
  for (const std::size_t column : {kIndex, kFamily, kSplit, kDifficulty, kDuration, kQuestionIds, kSolutionIds,
                                   kAnswerIds, kValidFrames}) {
    if (column >= checksum_columns_) continue;
    for (std::int64_t i = 0; i < size(); ++i) {
      if (computed_checksum(column, i) != stored_checksum(column, i)) throw Error(damage_message(column, i));
    }
  }
}

// Values that a damaged or hand-made file (schema 1: no checksums) could hold.
void CorpusReader::check_values() {
  for (std::int64_t i = 0; i < size(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (family_[k] < 0 || family_[k] >= kFamilyCount) {
      throw Error(path_ + " dataset /items/family: item " + std::to_string(i) + " has family " + std::to_string(family_[k]));
    }
    if (split_[k] < 0 || split_[k] >= kSplitCount) {
      throw Error(path_ + " dataset /items/split: item " + std::to_string(i) + " has split " + std::to_string(split_[k]));
    }
    if (!valid_frames_.empty() && (valid_frames_[k] < 1 || valid_frames_[k] > frames(i))) {
      throw Error(path_ + " dataset /items/valid_frames: item " + std::to_string(i) + " has " +
                  std::to_string(valid_frames_[k]) + " valid frames of " + std::to_string(frames(i)));
    }
  }
  tokenizer_ = Tokenizer::from_vocab(split_on(vocab_text_, '\n'), path_ + " dataset /tokenizer/vocab");
  const auto vocab_size = static_cast<std::int32_t>(tokenizer_.size());
  for (const auto* values : {&question_, &solution_, &answer_}) {
    for (const std::int32_t id : *values) {
      if (id < 0 || id >= vocab_size) {
        throw Error(path_ + " dataset /text: token id " + std::to_string(id) + " outside the vocabulary of " +
                    std::to_string(vocab_size));
      }
    }
  }
}

std::int64_t CorpusReader::frames(std::int64_t i) const {
  return frame_offsets_.at(static_cast<std::size_t>(i) + 1) - frame_offsets_.at(static_cast<std::size_t>(i));
}

std::int64_t CorpusReader::valid_frames(std::int64_t i) const {
  return valid_frames_.empty() ? frames(i) : valid_frames_.at(static_cast<std::size_t>(i));
}

std::vector<std::int32_t> CorpusReader::slice(const std::vector<std::int32_t>& values,
                                              const std::vector<std::int64_t>& offsets, std::int64_t i) {
  const auto k = static_cast<std::size_t>(i);
  return {values.begin() + offsets.at(k), values.begin() + offsets.at(k + 1)};
}

void CorpusReader::reencode(const IdConverter& convert) {
  auto redo = [&](std::vector<std::int32_t>& values, std::vector<std::int64_t>& offsets, const char* what) {
    std::vector<std::int32_t> out;
    std::vector<std::int64_t> out_offsets{0};
    for (std::int64_t i = 0; i < size(); ++i) {
      const std::vector<std::int32_t> ids =
          convert(slice(values, offsets, i), path_ + " item " + std::to_string(i) + " " + what);
      out.insert(out.end(), ids.begin(), ids.end());
      out_offsets.push_back(static_cast<std::int64_t>(out.size()));
    }
    values = std::move(out);
    offsets = std::move(out_offsets);
  };
  redo(question_, question_offsets_, "question");
  redo(solution_, solution_offsets_, "solution");
  reencoded_ = true;
}

std::vector<std::uint16_t> CorpusReader::raw_features(std::int64_t i) const {
  const std::int64_t rows = frames(i);
  std::vector<std::uint16_t> values;
  try {
    // As h5::File::read_all: far more than the file stores is a damaged file, not an allocation.
    const auto bytes = static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(n_mels_) * sizeof(std::uint16_t);
    if (bytes > feature_storage_bytes_ * 1000 + (std::uint64_t{64} << 20)) throw std::length_error("claimed size");
    values.resize(static_cast<std::size_t>(rows * n_mels_));
  } catch (const std::exception&) {  // bad_alloc, length_error: offsets from a damaged file
    throw Error(path_ + " dataset /audio/features: item " + std::to_string(i) + " claims " + std::to_string(rows) +
                " frames, more than the file stores or memory can hold (is the file damaged?)");
  }
  file_.read_rows("/audio/features", static_cast<std::uint64_t>(frame_offsets_[static_cast<std::size_t>(i)]),
                  static_cast<std::uint64_t>(rows), values.data(), Dtype::kFloat16);
  return values;
}

std::vector<std::uint16_t> CorpusReader::features(std::int64_t i) const {
  std::vector<std::uint16_t> values = raw_features(i);
  if (has_checksums() && checksum_of(values.data(), values.size()) != stored_checksum(kFeatures, i)) {
    throw Error(damage_message(kFeatures, i));
  }
  for (const std::uint16_t v : values) {
    if (!half_is_finite(v)) {
      throw Error(path_ + " dataset /audio/features: item " + std::to_string(i) + " has NaN or infinite values");
    }
  }
  return values;
}

void CorpusReader::check_features_finite() const {
  for (std::int64_t i = 0; i < size(); ++i) features(i);
}

std::vector<CorpusReader::Damage> CorpusReader::verify() const {
  CORD_CHECK(!reencoded_, "CorpusReader::verify() after reencode(): the ids in memory are no longer the file's");
  std::vector<Damage> damaged;
  if (!has_checksums()) return damaged;
  if (vocab_damaged_) damaged.push_back({"/tokenizer/vocab", -1});
  const std::vector<std::int32_t> speaker = file_.read_all<std::int32_t>("/items/speaker");
  const std::vector<std::int32_t> rate = file_.read_all<std::int32_t>("/items/rate");
  const std::vector<std::int32_t> pitch = file_.read_all<std::int32_t>("/items/pitch");
  for (std::int64_t i = 0; i < size(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    for (std::size_t column = 0; column < checksum_columns_; ++column) {
      std::int64_t computed = 0;
      if (column == kSpeaker) computed = checksum_of(speaker[k]);
      else if (column == kRate) computed = checksum_of(rate[k]);
      else if (column == kPitch) computed = checksum_of(pitch[k]);
      else if (column == kFeatures) computed = checksum_of(raw_features(i).data(), static_cast<std::size_t>(frames(i) * n_mels_));
      else computed = computed_checksum(column, i);
      if (computed != stored_checksum(column, i)) damaged.push_back({kChecksumColumns[column], i});
    }
  }
  return damaged;
}

}  // namespace cord::data
