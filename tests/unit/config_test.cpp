// Config tree: TOML loading, --set overrides, validation messages, the resolved dump.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cord/config/load.hpp"
#include "cord/core/error.hpp"

namespace cord {
namespace {

namespace fs = std::filesystem;

// A TOML file in a fresh temporary directory, removed at the end of the test.
class TomlFile {
 public:
  explicit TomlFile(const std::string& text) {
    path_ = fs::temp_directory_path() /
            ("cord_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++) + ".toml");
    std::ofstream(path_) << text;
  }
  ~TomlFile() { fs::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// Runs `action` and returns the UsageError message it must throw.
template <typename Action>
std::string usage_error_of(Action&& action) {
  try {
    action();
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a UsageError";
  return "";
}

TEST(Config, DefaultsAreTheEmbeddedConfiguration) {
  const Config config = load_config("", {});
  EXPECT_EQ(config.parallel.dp, 0);
  EXPECT_EQ(config.parallel.tp, 1);
  EXPECT_EQ(config.runtime.device, DeviceOption::kAuto);
  EXPECT_EQ(config.runtime.threads, 0);
}

TEST(Config, LoadsTomlFile) {
  TomlFile file("[parallel]\ntp = 2\n\n[runtime]\ndevice = \"cpu\"\nthreads = 3\n");
  const Config config = load_config(file.path(), {});
  EXPECT_EQ(config.parallel.tp, 2);
  EXPECT_EQ(config.runtime.device, DeviceOption::kCpu);
  EXPECT_EQ(config.runtime.threads, 3);
}

TEST(Config, DottedKeysAndInlineTablesAreTheSameKeys) {
  TomlFile file("parallel.tp = 4\nruntime = { device = \"cuda\" }\n");
  const Config config = load_config(file.path(), {});
  EXPECT_EQ(config.parallel.tp, 4);
  EXPECT_EQ(config.runtime.device, DeviceOption::kCuda);
}

TEST(Config, UnknownKeyNamesKeyFileAndLineAndSuggests) {
  TomlFile file("[parallel]\ntp = 2\ntpp = 3\n");
  const std::string message = usage_error_of([&] { load_config(file.path(), {}); });
  EXPECT_NE(message.find("unknown key 'parallel.tpp'"), std::string::npos) << message;
  EXPECT_NE(message.find(file.path() + ":3"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'parallel.tp'"), std::string::npos) << message;
}

TEST(Config, UnknownSectionIsAnError) {
  TomlFile file("[paralel]\ntp = 2\n");
  const std::string message = usage_error_of([&] { load_config(file.path(), {}); });
  EXPECT_NE(message.find("unknown key 'paralel.tp'"), std::string::npos) << message;
}

TEST(Config, WrongTypeNamesKeyAndExpectedType) {
  TomlFile file("[parallel]\ntp = \"two\"\n");
  const std::string message = usage_error_of([&] { load_config(file.path(), {}); });
  EXPECT_NE(message.find("parallel.tp in " + file.path() + ":2 must be an integer"), std::string::npos) << message;
}

TEST(Config, IntegerOutOfRangeIsAnError) {
  TomlFile file("[parallel]\ntp = 99999999999\n");
  EXPECT_THROW(load_config(file.path(), {}), UsageError);
}

TEST(Config, SyntaxErrorNamesFileLineAndColumn) {
  TomlFile file("[parallel]\ntp = = 2\n");
  const std::string message = usage_error_of([&] { load_config(file.path(), {}); });
  EXPECT_NE(message.find("cannot parse config " + file.path() + ":2:"), std::string::npos) << message;
}

TEST(Config, MissingFileIsAnError) {
  const std::string message = usage_error_of([] { load_config("/nonexistent/cord.toml", {}); });
  EXPECT_NE(message.find("/nonexistent/cord.toml"), std::string::npos) << message;
}

TEST(Config, OverridesApplyInOrderAfterTheFile) {
  TomlFile file("[parallel]\ntp = 2\n");
  const Config config = load_config(file.path(), {"parallel.tp=4", "runtime.device=cpu", "parallel.tp=1"});
  EXPECT_EQ(config.parallel.tp, 1);
  EXPECT_EQ(config.runtime.device, DeviceOption::kCpu);
}

TEST(Config, OverrideAcceptsQuotedStrings) {
  EXPECT_EQ(load_config("", {"runtime.device=\"cuda\""}).runtime.device, DeviceOption::kCuda);
}

TEST(Config, OverrideErrorsAreExact) {
  EXPECT_EQ(usage_error_of([] { load_config("", {"parallel.tp"}); }),
            "--set parallel.tp: expected section.key=value");
  EXPECT_EQ(usage_error_of([] { load_config("", {"parallel.tp=two"}); }),
            "--set parallel.tp=two: parallel.tp must be an integer (in range)");
  EXPECT_EQ(usage_error_of([] { load_config("", {"parallel.tp=2x"}); }),
            "--set parallel.tp=2x: parallel.tp must be an integer (in range)");
  EXPECT_EQ(usage_error_of([] { load_config("", {"parallel.pt=2"}); }),
            "unknown key 'parallel.pt' in --set parallel.pt=2 (did you mean 'parallel.tp'?)");
}

TEST(Config, ValidationMessagesAreExact) {
  EXPECT_EQ(usage_error_of([] { load_config("", {"runtime.device=tpu"}); }),
            "runtime.device='tpu' is not one of cpu, cuda, auto");
  EXPECT_EQ(usage_error_of([] { load_config("", {"cord.method=ppo"}); }),
            "cord.method='ppo' is not one of cord, cord-unweighted, opd, grpo, sft, fkl");
  EXPECT_EQ(usage_error_of([] { load_config("", {"runtime.threads=-1"}); }),
            "runtime.threads=-1 must be >= 0");
  EXPECT_EQ(usage_error_of([] { load_config("", {"runtime.hang_timeout_s=-1"}); }),
            "runtime.hang_timeout_s=-1 must be >= 0");
}

TEST(Config, ModelValidationMessagesAreExact) {
  EXPECT_EQ(usage_error_of([] { load_config("", {"model.n_heads=3"}); }),
            "model.d_model=128 is not divisible by model.n_heads=3");
  EXPECT_EQ(usage_error_of([] { load_config("", {"model.d_model=48", "model.n_heads=16"}); }),
            "model.d_model / model.n_heads = 3 must be even (rotary embeddings rotate pairs)");
  EXPECT_EQ(usage_error_of([] { load_config("", {"model.n_kv_heads=3"}); }),
            "model.n_heads=4 is not divisible by model.n_kv_heads=3");
  EXPECT_EQ(usage_error_of([] { load_config("", {"model.norm_eps=0"}); }), "model.norm_eps=0 must be > 0");
  EXPECT_EQ(usage_error_of([] { validate_tensor_parallel(load_config("", {}).model, 8); }),
            "model.n_heads=4 is not divisible by parallel.tp=8");
  EXPECT_NO_THROW(validate_tensor_parallel(load_config("", {"model.n_kv_heads=2"}).model, 2));
}

TEST(Config, AudioFeatureAndEncoderMessagesAreExact) {
  EXPECT_EQ(usage_error_of([] { load_config("", {"corpus.n_mels=128"}); }),
            "corpus.n_mels = 128: cord features have 80 mel bins (another count needs corpus.features = whisper)");
  EXPECT_NO_THROW(load_config("", {"corpus.n_mels=128", "corpus.features=whisper"}));
  EXPECT_EQ(usage_error_of([] { load_config("", {"model.audio.architecture=whisper"}); }),
            "model.audio.d_ff = 0 must be > 0 with model.audio.architecture = whisper (the encoder's MLP width)");
  EXPECT_EQ(usage_error_of([] {
              validate_tensor_parallel(load_config("", {"model.audio.architecture=whisper", "model.audio.d_ff=90"}).model, 4);
            }),
            "model.audio.d_ff=90 is not divisible by parallel.tp=4");
}

TEST(Config, ParameterGroupListsNameTheKey) {
  EXPECT_EQ(usage_error_of([] { load_config("", {"train.align_trainable=projector,speech"}); }),
            "train.align_trainable: 'speech' is not one of encoder, projector, decoder");
  EXPECT_EQ(usage_error_of([] { load_config("", {"train.align_trainable="}); }),
            "train.align_trainable is empty: name at least one of encoder, projector, decoder");
  EXPECT_EQ(usage_error_of([] { load_config("", {"cord.trainable=head"}); }),
            "cord.trainable: 'head' is not one of encoder, projector, decoder");
  EXPECT_EQ(load_config("", {}).train.align_trainable, "encoder,projector");
}

TEST(Config, AugmentationIsOffByDefaultAndItsRangesNameTheKey) {
  const Config config = load_config("", {});
  EXPECT_FALSE(config.train.augment.any());
  EXPECT_TRUE(load_config("", {"train.augment.freq_masks=2"}).train.augment.any());
  for (const char* bad : {"train.augment.speed=0.6", "train.augment.noise_fraction=1.5", "train.augment.time_masks=-1",
                          "train.augment.freq_mask_bins=0"}) {
    const std::string key = std::string(bad).substr(0, std::string(bad).find('='));
    EXPECT_NE(usage_error_of([&] { load_config("", {bad}); }).find(key), std::string::npos) << bad;
  }
  EXPECT_EQ(usage_error_of([] { load_config("", {"train.augment.noise_snr_min_db=20", "train.augment.noise_snr_max_db=5"}); }),
            "train.augment.noise_snr_max_db=5 is outside [20, 100]");
}

// A choice is parsed once, at load: a misspelt name in a file names the key, the file and
// line and every valid name; the resolved dump writes the name back.
TEST(Config, ChoicesAreParsedAtLoadAndDumpedByName) {
  TomlFile file("[cord]\nteacher = \"current\"\nmethod = \"cordd\"\n");
  const std::string message = usage_error_of([&] { load_config(file.path(), {}); });
  EXPECT_EQ(message, "cord.method='cordd' in " + file.path() + ":3 is not one of cord, cord-unweighted, opd, grpo, sft, fkl");
  const Config config = load_config("", {"cord.method=fkl", "train.stage=distill", "cord.aggregation=token_mean"});
  EXPECT_EQ(config.cord.method, Method::kFkl);
  EXPECT_EQ(config.train.stage, StageName::kDistill);
  EXPECT_EQ(config.cord.aggregation, Aggregation::kTokenMean);
  const std::string text = to_toml(config);
  EXPECT_NE(text.find("method = \"fkl\""), std::string::npos) << text;
  EXPECT_NE(text.find("stage = \"distill\""), std::string::npos) << text;
  const std::string busy = usage_error_of([] { load_config("", {"ckpt.async_busy=later"}); });
  EXPECT_NE(busy.find("ckpt.async_busy='later'"), std::string::npos) << busy;
  EXPECT_NE(busy.find("is not one of wait, skip"), std::string::npos) << busy;
  const Config async = load_config("", {"ckpt.async=true", "ckpt.async_busy=skip"});
  EXPECT_TRUE(async.ckpt.async);
  EXPECT_EQ(async.ckpt.async_busy, AsyncBusy::kSkip);
}

TEST(Config, NestedSectionsLoadFromTomlTables) {
  TomlFile file("[model]\nd_model = 64\n\n[model.audio]\nn_layers = 1\n");
  const Config config = load_config(file.path(), {});
  EXPECT_EQ(config.model.d_model, 64);
  EXPECT_EQ(config.model.audio.n_layers, 1);
  EXPECT_NE(to_toml(config).find("[model.audio]"), std::string::npos);
}

TEST(Config, DumpRoundTripsAndDocumentsEveryField) {
  const Config config = load_config("", {"parallel.tp=2", "parallel.dp=3", "runtime.device=cuda"});
  const std::string text = to_toml(config);
  Config copy = config;
  for (Field& field : config_fields(copy)) EXPECT_NE(text.find(std::string(field.doc)), std::string::npos);
  TomlFile file(text);
  const Config reloaded = load_config(file.path(), {});
  EXPECT_EQ(to_toml(reloaded), text);
  EXPECT_EQ(reloaded.parallel.dp, 3);
  EXPECT_EQ(reloaded.runtime.device, DeviceOption::kCuda);
}

TEST(Config, SplitCommaList) {
  EXPECT_EQ(split_comma_list(" en-us, en ,,en-gb-x-rp "), (std::vector<std::string>{"en-us", "en", "en-gb-x-rp"}));
  EXPECT_TRUE(split_comma_list(" , ").empty());
}

TEST(Config, EveryFieldHasAUniqueDottedKeyAndDoc) {
  Config config;
  const std::vector<Field> fields = config_fields(config);
  for (std::size_t i = 0; i < fields.size(); ++i) {
    EXPECT_NE(fields[i].key.find('.'), std::string_view::npos) << fields[i].key;
    EXPECT_FALSE(fields[i].doc.empty()) << fields[i].key;
    for (std::size_t j = i + 1; j < fields.size(); ++j) EXPECT_NE(fields[i].key, fields[j].key);
  }
}

}  // namespace
}  // namespace cord
