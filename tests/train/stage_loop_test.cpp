// StageLoop driven directly by a fake stage (no real loss, no decoding): the cadence of
// step, validation and checkpoint records; a skipped step counted nowhere in the window;
// the resume position and a resume-exact window mean; stop on a signal with a checkpoint.
// Runs under mpiexec -n 1 and -n 2 (dp = world size).
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cord/comm/collectives.hpp"
#include "cord/data/corpus.hpp"
#include "cord/train/stage_loop.hpp"
#include "data_test_util.hpp"
#include "model_fixtures.hpp"
#include "mpi_test_world.hpp"

namespace cord::train {
namespace {

using nlohmann::json;

// A stage whose loss is a weighted sum of squares of one trainable matrix: it falls as
// AdamW trains, differs from step to step, and depends on the micro-batch's items (so
// that the loader's position matters). Records what the loop asked of it.
class FakeStage final : public Stage {
 public:
  explicit FakeStage(StageContext& context) : c_(context) {
    model::set_trainable(*c_.model->encoder, false);
    model::set_trainable(*c_.model->projector, false);
  }
  std::string label() const override { return "fake"; }
  std::string describe() const override { return "a fake stage"; }
  json header_fields() const override { return {{"init", ""}}; }
  int64_t bucket_window() const override { return 0; }
  StepStats prepare_step(int64_t step, const data::Batch& /*batch*/, StepTimer& /*timer*/) override {
    prepared.push_back(step);
    if (signal_at_step == step) std::raise(SIGUSR1);
    return {};
  }
  MicroBatchLoss forward(const MicroBatch& micro, StepTimer& /*timer*/) override {
    const at::Tensor weight = c_.model->decoder->parameters().front();
    double items = 0;
    for (const int64_t row : micro.part.items) items += static_cast<double>(row % 7 + 1);
    MicroBatchLoss out;
    out.loss = weight.pow(2).sum() * (items / static_cast<double>(micro.local_batch));
    out.stats.positions = static_cast<double>(micro.end - micro.begin);
    return out;
  }
  Validation validate() override {
    ++validations;
    return {{{"accuracy", 0.0}}, "fake"};
  }

  std::vector<int64_t> prepared;
  int validations = 0;
  int64_t signal_at_step = -1;

 private:
  StageContext& c_;
};

class StageLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const comm::World& world = cord::testing::world();
    groups_ = std::make_unique<comm::ProcessGroups>(
        comm::make_process_groups(world, comm::ParallelDims::resolve(0, 1, world.size()), false));
    // Rank 0 picks the folder; every rank writes its share of a 64-item corpus.
    std::string dir;
    if (world.rank() == 0) {
      char pattern[] = "/tmp/cord_stage_loop_XXXXXX";
      ASSERT_NE(mkdtemp(pattern), nullptr);
      dir = pattern;
    }
    dir_ = comm::broadcast_string(groups_->world, dir, 0);
    CorpusConfig corpus = data::testing::small_config(64);
    corpus.validation_fraction = 0;
    corpus.test_fraction = 0;
    const int64_t begin = 64 * world.rank() / world.size(), end = 64 * (world.rank() + 1) / world.size();
    data::write_corpus(dir_ + "/corpus.h5", data::CorpusHeader{"synth", 1, "", {}},
                       data::Tokenizer::from_generators(), data::testing::fake_records(corpus, begin, end),
                       world.comm());
  }
  void TearDown() override {
    comm::barrier(groups_->world);
    if (groups_->world.rank() == 0) std::system(("rm -rf " + dir_).c_str());
  }

  Config config(const std::string& run) const {
    Config c;
    c.model = cord::testing::tiny_model_config();
    c.model.vocab_size = 232;
    c.model.audio.n_mels = data::kMelBins;
    c.runtime.device = DeviceOption::kCpu;
    c.train.stage = StageName::kText;
    c.train.corpus = dir_ + "/corpus.h5";
    c.train.run_dir = dir_ + "/" + run;
    c.train.text = StageConfig{6, 8, 1e-2, 1e-3, 1};
    c.train.micro_batch = 2;
    c.train.log_every = 2;
    c.train.val_every = 3;
    c.train.val_items = 4;
    c.ckpt.every_steps = 2;
    c.ckpt.keep_last = 10;
    return c;
  }

  // Runs a whole stage; returns its summary, and the stage for what the loop asked of it.
  StageSummary run(const Config& c, std::unique_ptr<FakeStage>* stage_out = nullptr, int64_t signal_at = -1) {
    StageContext context = open_stage_context(c, *groups_, "cpu");
    auto stage = std::make_unique<FakeStage>(context);
    stage->signal_at_step = signal_at;
    StageLoop loop(context, *stage, "stage_loop_test");
    const StageSummary summary = loop.train();
    if (stage_out != nullptr) *stage_out = std::move(stage);
    return summary;
  }

  std::vector<json> records(const Config& c, const std::string& type) const {
    std::vector<json> out;
    std::ifstream in(c.train.run_dir + "/text/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const json r = json::parse(line);
      if (r["type"] == type) out.push_back(r);
    }
    return out;
  }

  static std::vector<int64_t> steps_of(const std::vector<json>& records) {
    std::vector<int64_t> steps;
    for (const json& r : records) steps.push_back(r["step"].get<int64_t>());
    return steps;
  }

  bool rank0() const { return groups_->world.rank() == 0; }

  std::unique_ptr<comm::ProcessGroups> groups_;
  std::string dir_;
};

TEST_F(StageLoopTest, CadenceOfStepValidationAndCheckpointRecords) {
  const Config c = config("cadence");
  std::unique_ptr<FakeStage> stage;
  const StageSummary summary = run(c, &stage);
  EXPECT_EQ(summary.steps, 6);
  EXPECT_FALSE(summary.stopped);
  EXPECT_EQ(stage->prepared, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(stage->validations, 2);  // val_every 3, and at the end
  if (!rank0()) return;
  EXPECT_EQ(steps_of(records(c, "step")), (std::vector<int64_t>{2, 4, 6}));
  EXPECT_EQ(steps_of(records(c, "validation")), (std::vector<int64_t>{3, 6}));
  EXPECT_EQ(steps_of(records(c, "checkpoint")), (std::vector<int64_t>{2, 4, 6}));
  const std::vector<json> steps = records(c, "step");
  EXPECT_LT(steps.back()["step_loss"].get<double>(), steps.front()["step_loss"].get<double>()) << "the loss falls";
  ASSERT_EQ(records(c, "end").size(), 1U);
  EXPECT_EQ(records(c, "end")[0]["optimizer_steps"], 6);
}

TEST_F(StageLoopTest, ASkippedStepCountsNowhereInTheWindow) {
  Config c = config("skip");
  c.train.inject_nonfinite = "3";
  const StageSummary summary = run(c);
  EXPECT_EQ(summary.skipped, 1);
  if (!rank0()) return;
  EXPECT_EQ(steps_of(records(c, "skip")), (std::vector<int64_t>{3}));
  const std::vector<json> steps = records(c, "step");
  ASSERT_EQ(steps_of(steps), (std::vector<int64_t>{2, 4, 6}));
  // Step 3 was skipped, so the window of the record at step 4 holds step 4 alone.
  EXPECT_EQ(steps[1]["loss"].get<double>(), steps[1]["step_loss"].get<double>());
  EXPECT_EQ(steps[1]["skipped"], 1);
  EXPECT_EQ(records(c, "end")[0]["optimizer_steps"], 5);
}

TEST_F(StageLoopTest, ResumesAtTheCheckpointWithTheSameWindowMeans) {
  Config c = config("resume-a");
  c.ckpt.every_steps = 1;
  c.train.log_every = 3;
  c.train.val_items = 0;
  run(c);
  // Interrupted after step 2, in the middle of the window of steps 1..3.
  Config resumed = c;
  resumed.train.run_dir = dir_ + "/resume-b";
  if (rank0()) {
    const std::string from = c.train.run_dir + "/text/checkpoints", to = resumed.train.run_dir + "/text/checkpoints";
    ASSERT_EQ(std::system(("mkdir -p " + to + " && cp " + from + "/step-00000002.h5 " + to +
                           " && echo step-00000002.h5 > " + to + "/latest")
                              .c_str()),
              0);
  }
  comm::barrier(groups_->world);
  resumed.ckpt.resume = "auto";
  std::unique_ptr<FakeStage> stage;
  const StageSummary summary = run(resumed, &stage);
  EXPECT_EQ(stage->prepared, (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(summary.steps, 6);
  if (!rank0()) return;
  const std::vector<json> expected = records(c, "step"), got = records(resumed, "step");
  ASSERT_EQ(steps_of(got), (std::vector<int64_t>{3, 6}));
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i]["loss"].get<double>(), expected[i]["loss"].get<double>()) << "window mean at step " << got[i]["step"];
    EXPECT_EQ(got[i]["step_loss"].get<double>(), expected[i]["step_loss"].get<double>());
  }
}

TEST_F(StageLoopTest, StopsOnASignalAfterSavingACheckpoint) {
  const Config c = config("signal");
  const StageSummary summary = run(c, nullptr, /*signal_at=*/1);
  EXPECT_TRUE(summary.stopped);
  EXPECT_EQ(summary.steps, 2);  // the step in flight finishes first
  if (!rank0()) return;
  EXPECT_EQ(steps_of(records(c, "checkpoint")), (std::vector<int64_t>{2}));
  ASSERT_EQ(records(c, "stop").size(), 1U);
  EXPECT_EQ(records(c, "stop")[0]["reason"], "SIGUSR1");
  EXPECT_TRUE(records(c, "end").empty());
  EXPECT_EQ(access((c.train.run_dir + "/text/model.h5").c_str(), F_OK), -1) << "no weights after a stop";
}

}  // namespace
}  // namespace cord::train
