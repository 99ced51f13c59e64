// HDF5 wrappers, the corpus file (write, read, verify, bad files) and the loader
// (sharding by dp rank, the same global order for any dp, exact resume).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "cord/core/checksum.hpp"
#include "cord/data/corpus.hpp"
#include "cord/data/loader.hpp"
#include "cord/h5/h5.hpp"
#include "data_test_util.hpp"
#include "mpi_test_world.hpp"

namespace cord::data {
namespace {

using testing::error_of;
using testing::fake_records;
using testing::small_config;
using testing::TempDir;

MPI_Comm world_comm() { return cord::testing::world().comm(); }

TEST(H5, RowsAttributesAndTypesRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("a.h5");
  {
    h5::File f = h5::File::create(path);
    f.create_group("/g");
    f.create_dataset("/g/x", h5::Dtype::kInt32, {4, 3});
    const std::vector<std::int32_t> rows = {1, 2, 3, 4, 5, 6};
    f.write("/g/x", 1, rows, 3);
    f.create_dataset("/h", h5::Dtype::kFloat16, {2});
    f.write<std::uint16_t>("/h", 0, {0x3C00, 0xC000});
    f.set_attribute("/", "n", std::int64_t{7});
    f.set_attribute("/g", "s", std::string("hello"));
    f.set_attribute("/", "d", 2.5);
    f.close();
  }
  const h5::File f = h5::File::open_read_only(path);
  const h5::DatasetInfo info = f.dataset_info("/g/x");
  EXPECT_EQ(info.dtype, h5::Dtype::kInt32);
  EXPECT_EQ(info.shape, (std::vector<std::uint64_t>{4, 3}));
  EXPECT_EQ(f.read_all<std::int32_t>("/g/x"), (std::vector<std::int32_t>{0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0}));
  EXPECT_EQ(f.dataset_info("/h").dtype, h5::Dtype::kFloat16);
  EXPECT_EQ(f.read_all<float>("/h"), (std::vector<float>{1.0f, -2.0f}));  // converted by HDF5
  EXPECT_EQ(f.attribute_int("/", "n"), 7);
  EXPECT_EQ(f.attribute_string("/g", "s"), "hello");
  EXPECT_EQ(f.attribute_double("/", "d"), 2.5);
  EXPECT_TRUE(f.exists("/g/x"));
  EXPECT_FALSE(f.exists("/nope/x"));
  EXPECT_NE(error_of<Error>([&] { f.dataset_info("/nope"); }).find(path + ": missing dataset /nope"), std::string::npos);
  EXPECT_NE(error_of<Error>([&] { f.attribute_int("/", "s"); }).find("attribute s is missing"), std::string::npos);
  std::vector<std::int32_t> too_many(3);
  EXPECT_NE(error_of<Error>([&] { f.read_rows("/g/x", 3, 2, too_many.data(), h5::Dtype::kInt32); }).find("outside"),
            std::string::npos);
  EXPECT_NE(error_of<Error>([&] { h5::File::open_read_only(dir.file("missing.h5")); }).find("missing.h5"),
            std::string::npos);
}

TEST(CorpusFile, WritesVerifiesAndReadsBack) {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  const CorpusConfig config = small_config(30);
  const std::vector<CorpusRecord> records = fake_records(config, 0, 30);
  CorpusHeader header;
  header.source = "synth";
  header.seed = config.seed;
  header.speakers = {"en-us", "en"};
  write_corpus(path, header, Tokenizer::from_generators(), records, world_comm());
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"c.h5"});  // no temporary left behind

  const CorpusReader corpus(path);
  ASSERT_EQ(corpus.size(), 30);
  EXPECT_EQ(corpus.schema_version(), kSchemaVersion);
  EXPECT_EQ(corpus.speakers(), header.speakers);
  EXPECT_EQ(corpus.tokenizer().vocab(), Tokenizer::from_generators().vocab());
  for (std::int64_t i = 0; i < 30; ++i) {
    const CorpusRecord& r = records[static_cast<std::size_t>(i)];
    EXPECT_EQ(corpus.index(i), r.index);
    EXPECT_EQ(corpus.family(i), r.family);
    EXPECT_EQ(corpus.split(i), r.split);
    EXPECT_EQ(corpus.question(i), r.question);
    EXPECT_EQ(corpus.solution(i), r.solution);
    EXPECT_EQ(corpus.answer(i), r.answer);
    EXPECT_EQ(corpus.frames(i), r.frames);
    EXPECT_EQ(corpus.features(i), r.features);
  }
  EXPECT_EQ(corpus.tokenizer().decode(corpus.answer(0)), ProblemGenerator(config).generate(0).answer);
}

// Schema 3: Whisper features of 128 bins, stored 2 frames past the valid ones.
TEST(CorpusFile, WhisperFeaturesKeepTheirKindBinsAndValidFrames) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  std::vector<CorpusRecord> records = fake_records(small_config(8), 0, 8);
  for (CorpusRecord& r : records) {
    r.features.clear();
    for (std::int64_t k = 0; k < r.frames * 128; ++k) r.features.push_back(static_cast<std::uint16_t>(0x3400 + k % 97));
    r.valid_frames = r.frames - 2;
    r.split = Split::kTrain;
  }
  CorpusHeader header{"import", 0, "", {}};
  header.feature_kind = "whisper";
  header.n_mels = 128;
  write_corpus(path, header, Tokenizer::from_generators(), records, world_comm());
  const CorpusReader corpus(path);
  EXPECT_EQ(corpus.feature_kind(), "whisper");
  EXPECT_EQ(corpus.n_mels(), 128);
  for (std::int64_t i = 0; i < corpus.size(); ++i) {
    EXPECT_EQ(corpus.frames(i), records[static_cast<std::size_t>(i)].frames);
    EXPECT_EQ(corpus.valid_frames(i), records[static_cast<std::size_t>(i)].frames - 2);
    EXPECT_EQ(corpus.features(i), records[static_cast<std::size_t>(i)].features);
  }
  EXPECT_TRUE(corpus.verify().empty());
  LoaderOptions options;
  options.global_batch = 4;
  CorpusLoader loader(corpus, options);
  const Batch batch = loader.next();
  EXPECT_EQ(batch.features.size(2), 128);
  for (std::size_t k = 0; k < batch.items.size(); ++k) {
    const auto idx = static_cast<std::int64_t>(k);
    // The encoder attends to the valid frames and reads the 2 after them.
    EXPECT_EQ(batch.feature_lengths[idx].item<std::int64_t>(), corpus.valid_frames(batch.items[k]));
    EXPECT_EQ(batch.feature_mask[idx].sum().item<std::int64_t>(), corpus.frames(batch.items[k]));
  }
}

// Rewrites one piece of a valid corpus with the raw wrappers, then expects the reader's message.
class BadCorpus : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("bad.h5");
    write_corpus(path_, CorpusHeader{"synth", 1, "", {}}, Tokenizer::from_generators(),
                 fake_records(small_config(12), 0, 12), world_comm());
  }
  std::string reader_error() const {
    return error_of<Error>([&] { CorpusReader r(path_); r.check_features_finite(); });
  }
  // A copy of the corpus with `edit` applied through the HDF5 C API.
  template <typename Edit>
  void edit(Edit&& change) {
    const hid_t file = H5Fopen(path_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    change(file);
    H5Fclose(file);
  }
  TempDir dir_;
  std::string path_;
};

TEST_F(BadCorpus, WrongSchemaVersion) {
  edit([](hid_t file) {
    const hid_t attribute = H5Aopen(file, "schema_version", H5P_DEFAULT);
    const std::int64_t version = 99;
    H5Awrite(attribute, H5T_NATIVE_INT64, &version);
    H5Aclose(attribute);
  });
  EXPECT_NE(reader_error().find(path_ + ": schema_version 99 is not supported"), std::string::npos) << reader_error();
}

TEST_F(BadCorpus, MissingDataset) {
  edit([](hid_t file) { H5Ldelete(file, "/text/solution_offsets", H5P_DEFAULT); });
  EXPECT_NE(reader_error().find(path_ + ": missing dataset /text/solution_offsets"), std::string::npos) << reader_error();
}

// Replaces `name` by an empty 1-d dataset of `rows` elements of `type`.
void replace_dataset(hid_t file, const char* name, hid_t type, hsize_t rows) {
  H5Ldelete(file, name, H5P_DEFAULT);
  const hid_t space = H5Screate_simple(1, &rows, nullptr);
  H5Dclose(H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Sclose(space);
}

TEST_F(BadCorpus, WrongDtype) {
  edit([](hid_t file) { replace_dataset(file, "/items/difficulty", H5T_IEEE_F64LE, 12); });
  EXPECT_NE(reader_error().find("dataset /items/difficulty: dtype float64, expected int32"), std::string::npos)
      << reader_error();
}

TEST_F(BadCorpus, WrongShape) {
  edit([](hid_t file) { replace_dataset(file, "/items/split", H5T_STD_I8LE, 11); });
  EXPECT_NE(reader_error().find("dataset /items/split: shape [11], expected [12]"), std::string::npos) << reader_error();
}

// A NaN written into a schema-2 file is damage: the item's checksum catches it first. (The
// NaN message itself is checked on a version-1 file: cli_corpus_bad_files.)
TEST_F(BadCorpus, ChangedFeaturesAreNamedByTheirChecksum) {
  edit([](hid_t file) {
    const hid_t set = H5Dopen2(file, "/audio/features", H5P_DEFAULT);
    const hid_t space = H5Dget_space(set);
    const hsize_t start[2] = {25, 3}, count[2] = {1, 1};
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    const hid_t memory = H5Screate_simple(2, count, nullptr);
    const float nan = std::nanf("");
    H5Dwrite(set, H5T_NATIVE_FLOAT, memory, space, H5P_DEFAULT, &nan);
    H5Sclose(memory);
    H5Sclose(space);
    H5Dclose(set);
  });
  EXPECT_NE(reader_error().find(path_ + " dataset /audio/features: item 1 does not match its checksum"),
            std::string::npos)
      << reader_error();
}

TEST_F(BadCorpus, TruncatedFile) {
  struct stat info {};
  ASSERT_EQ(stat(path_.c_str(), &info), 0);
  ASSERT_EQ(truncate(path_.c_str(), info.st_size / 2), 0);
  EXPECT_NE(reader_error().find("cannot open " + path_ + " as HDF5"), std::string::npos) << reader_error();
}

// The feature attributes of schema 3 (feature_kind, n_mels) and /items/valid_frames.
void replace_string_attribute(hid_t file, const char* name, const char* value) {
  H5Adelete(file, name);
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t attribute = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attribute, type, &value);
  H5Aclose(attribute);
  H5Sclose(space);
  H5Tclose(type);
}

void write_int64_attribute(hid_t file, const char* name, std::int64_t value) {
  const hid_t attribute = H5Aopen(file, name, H5P_DEFAULT);
  H5Awrite(attribute, H5T_NATIVE_INT64, &value);
  H5Aclose(attribute);
}

// Writes one int64 element at (row, column) of a 1-d or 2-d dataset.
void write_int64_element(hid_t file, const char* name, hsize_t row, hsize_t column, std::int64_t value) {
  const hid_t set = H5Dopen2(file, name, H5P_DEFAULT);
  const hid_t space = H5Dget_space(set);
  const int rank = H5Sget_simple_extent_ndims(space);
  const hsize_t start[2] = {row, column}, count[2] = {1, 1};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
  const hid_t memory = H5Screate_simple(rank, count, nullptr);
  H5Dwrite(set, H5T_NATIVE_INT64, memory, space, H5P_DEFAULT, &value);
  H5Sclose(memory);
  H5Sclose(space);
  H5Dclose(set);
}

TEST_F(BadCorpus, UnknownFeatureKindIsNamed) {
  edit([](hid_t file) { replace_string_attribute(file, "feature_kind", "mfcc"); });
  EXPECT_NE(reader_error().find(path_ + ": root attribute feature_kind is 'mfcc', neither cord nor whisper"),
            std::string::npos)
      << reader_error();
}

TEST_F(BadCorpus, CordFeaturesWithAnotherBinCountAreNamed) {
  edit([](hid_t file) { write_int64_attribute(file, "n_mels", 128); });
  EXPECT_NE(reader_error().find(path_ + ": root attribute n_mels is 128, not valid for cord features"),
            std::string::npos)
      << reader_error();
}

// A damaged valid-frame count fails its checksum; a hand-made file whose checksum matches
// the bad count fails the range check, naming the item and both counts.
TEST_F(BadCorpus, ValidFramesOutsideTheItemAreNamed) {
  const std::int64_t frames = CorpusReader(path_).frames(4);
  edit([&](hid_t file) { write_int64_element(file, "/items/valid_frames", 4, 0, frames + 1); });
  EXPECT_NE(reader_error().find(path_ + " dataset /items/valid_frames: item 4 does not match its checksum"),
            std::string::npos)
      << reader_error();
  edit([&](hid_t file) {
    const std::int64_t bad = frames + 1;
    const hid_t set = H5Dopen2(file, "/checksums/items", H5P_DEFAULT);
    const hid_t space = H5Dget_space(set);
    hsize_t shape[2] = {0, 0};
    H5Sget_simple_extent_dims(space, shape, nullptr);
    H5Sclose(space);
    H5Dclose(set);
    // valid_frames is the last checksum column (schema 3 appended it).
    write_int64_element(file, "/checksums/items", 4, shape[1] - 1, static_cast<std::int64_t>(content_checksum(&bad, 8)));
  });
  EXPECT_NE(reader_error().find(path_ + " dataset /items/valid_frames: item 4 has " + std::to_string(frames + 1) +
                                " valid frames of " + std::to_string(frames)),
            std::string::npos)
      << reader_error();
}

TEST(CorpusFile, WriterRefusesMoreValidFramesThanFrames) {
  TempDir dir;
  std::vector<CorpusRecord> records = fake_records(small_config(4), 0, 4);
  records[2].valid_frames = records[2].frames + 1;
  const std::string message = error_of<Error>([&] {
    write_corpus(dir.file("v.h5"), CorpusHeader{"synth", 1, "", {}}, Tokenizer::from_generators(), records,
                 world_comm());
  });
  EXPECT_NE(message.find("record valid frames exceed its frames"), std::string::npos) << message;
}

// --- loader ---------------------------------------------------------------------------

class Loader : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    path_ = dir_->file("loader.h5");
    CorpusConfig config = small_config(90);
    config.validation_fraction = 0;
    config.test_fraction = 0;
    write_corpus(path_, CorpusHeader{"synth", 1, "", {}}, Tokenizer::from_generators(), fake_records(config, 0, 90),
                 world_comm());
    corpus_ = new CorpusReader(path_);
  }
  static void TearDownTestSuite() {
    delete corpus_;
    delete dir_;
  }
  static LoaderOptions options(int dp_rank, int dp_size, int bucket_window = 0) {
    LoaderOptions o;
    o.global_batch = 12;
    o.dp_rank = dp_rank;
    o.dp_size = dp_size;
    o.seed = 5;
    o.bucket_window = bucket_window;
    return o;
  }
  static inline TempDir* dir_ = nullptr;
  static inline std::string path_;
  static inline CorpusReader* corpus_ = nullptr;
};

TEST_F(Loader, SameGlobalOrderWhateverDp) {
  for (const int window : {0, 3}) {
    const CorpusLoader single(*corpus_, options(0, 1, window));
    EXPECT_EQ(single.batches_per_epoch(), 7);  // 90 / 12, last partial batch dropped
    for (const int dp : {2, 3, 4}) {
      for (std::int64_t epoch = 0; epoch < 2; ++epoch) {
        for (std::int64_t b = 0; b < single.batches_per_epoch(); ++b) {
          std::vector<std::int64_t> joined;
          for (int r = 0; r < dp; ++r) {
            const std::vector<std::int64_t> part = CorpusLoader(*corpus_, options(r, dp, window)).rows_of(epoch, b);
            EXPECT_EQ(part.size(), static_cast<std::size_t>(12 / dp));
            joined.insert(joined.end(), part.begin(), part.end());
          }
          EXPECT_EQ(joined, single.rows_of(epoch, b)) << "dp " << dp << " epoch " << epoch << " batch " << b;
        }
      }
    }
  }
}

TEST_F(Loader, EpochsArePermutationsAndDiffer) {
  const CorpusLoader loader(*corpus_, options(0, 1));
  std::set<std::int64_t> seen;
  std::vector<std::int64_t> first_epoch;
  for (std::int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
    for (const std::int64_t row : loader.rows_of(0, b)) {
      EXPECT_TRUE(seen.insert(row).second) << "row " << row << " twice in one epoch";
      first_epoch.push_back(row);
    }
  }
  EXPECT_EQ(seen.size(), 84u);
  EXPECT_NE(loader.rows_of(0, 0), loader.rows_of(1, 0));
}

TEST_F(Loader, AFamilyRestrictionDrawsOnlyThoseFamilies) {
  std::int64_t arithmetic = 0;
  for (std::int64_t i = 0; i < corpus_->size(); ++i) arithmetic += corpus_->family(i) == Family::kArithmetic;
  ASSERT_GE(arithmetic, 24);  // two global batches at least
  LoaderOptions o = options(0, 1, 3);
  o.families = {Family::kArithmetic};
  const CorpusLoader loader(*corpus_, o);
  EXPECT_EQ(loader.batches_per_epoch(), arithmetic / 12);
  std::set<std::int64_t> seen;
  for (std::int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
    for (const std::int64_t row : loader.rows_of(0, b)) {
      EXPECT_EQ(corpus_->family(row), Family::kArithmetic) << "row " << row;
      seen.insert(row);
    }
  }
  EXPECT_EQ(static_cast<std::int64_t>(seen.size()), loader.batches_per_epoch() * 12);
  // Fewer items than one global batch: the error names the restriction.
  o.global_batch = 84;
  try {
    CorpusLoader too_small(*corpus_, o);
    FAIL() << "a restriction smaller than one global batch was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("restricted to families arithmetic"), std::string::npos) << e.what();
  }
}

TEST_F(Loader, BucketingGroupsSimilarLengths) {
  const CorpusLoader plain(*corpus_, options(0, 1, 0)), bucketed(*corpus_, options(0, 1, 7));
  auto spread = [&](const CorpusLoader& l) {
    std::int64_t total = 0;
    for (std::int64_t b = 0; b < l.batches_per_epoch(); ++b) {
      std::int64_t lo = 1 << 30, hi = 0;
      for (const std::int64_t row : l.rows_of(0, b)) {
        lo = std::min(lo, corpus_->frames(row));
        hi = std::max(hi, corpus_->frames(row));
      }
      total += hi - lo;
    }
    return total;
  };
  EXPECT_LT(spread(bucketed), spread(plain));
}

TEST_F(Loader, BatchesArePaddedAndMasked) {
  CorpusLoader loader(*corpus_, options(1, 2));
  const Batch batch = loader.next();
  ASSERT_EQ(batch.items.size(), 6u);
  EXPECT_EQ(batch.features.dim(), 3);
  EXPECT_EQ(batch.features.size(2), kMelBins);
  for (std::size_t k = 0; k < batch.items.size(); ++k) {
    const std::int64_t row = batch.items[k];
    const auto idx = static_cast<std::int64_t>(k);
    EXPECT_EQ(batch.feature_lengths[idx].item<std::int64_t>(), corpus_->frames(row));
    EXPECT_EQ(batch.feature_mask[idx].sum().item<std::int64_t>(), corpus_->frames(row));
    EXPECT_EQ(batch.question_mask[idx].sum().item<std::int64_t>(), static_cast<std::int64_t>(corpus_->question(row).size()));
    const std::vector<std::uint16_t> half = corpus_->features(row);
    EXPECT_EQ(batch.features[idx][0][0].item<float>(), half_to_float(half[0]));
    EXPECT_EQ(batch.answers[k], corpus_->tokenizer().decode(corpus_->answer(row)));
    if (corpus_->frames(row) < batch.features.size(1)) {
      EXPECT_EQ(batch.features[idx][batch.features.size(1) - 1].abs().sum().item<float>(), 0.0f);
    }
  }
}

TEST_F(Loader, ExportedStateResumesExactly) {
  CorpusLoader loader(*corpus_, options(0, 2, 2));
  for (int i = 0; i < 9; ++i) loader.next();  // into the second epoch
  const LoaderState state = loader.export_state();
  std::vector<std::vector<std::int64_t>> expected;
  std::vector<float> expected_sums;
  for (int i = 0; i < 10; ++i) {
    const Batch b = loader.next();
    expected.push_back(b.items);
    expected_sums.push_back(b.features.sum().item<float>());
  }
  CorpusLoader resumed(*corpus_, options(0, 2, 2));
  resumed.restore(state);
  for (int i = 0; i < 10; ++i) {
    const Batch b = resumed.next();
    EXPECT_EQ(b.items, expected[static_cast<std::size_t>(i)]);
    EXPECT_EQ(b.features.sum().item<float>(), expected_sums[static_cast<std::size_t>(i)]);
  }
  LoaderState wrong = state;
  wrong.seed = 6;
  EXPECT_NE(error_of<Error>([&] { resumed.restore(wrong); }).find("seed"), std::string::npos);
}

TEST_F(Loader, BadOptionsAreUsageErrors) {
  LoaderOptions o = options(0, 5);
  EXPECT_NE(error_of<UsageError>([&] { CorpusLoader l(*corpus_, o); }).find("not divisible by dp 5"), std::string::npos);
  o = options(0, 1);
  o.split = Split::kTest;
  EXPECT_NE(error_of<UsageError>([&] { CorpusLoader l(*corpus_, o); }).find("fewer than one global batch"),
            std::string::npos);
}

}  // namespace
}  // namespace cord::data
