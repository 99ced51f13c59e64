#include "cord/train/text_stage.hpp"

#include <unistd.h>

#include <iomanip>
#include <numeric>
#include <sstream>

#include "cord/ckpt/model_weights.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/core/log.hpp"
#include "cord/data/corpus.hpp"
#include "cord/data/rng.hpp"
#include "cord/eval/evaluate.hpp"
#include "cord/eval/prompts.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/model/model_stats.hpp"

namespace cord::train {
namespace {

using eval::Input;
using eval::Task;

class TextStage final : public Stage {
 public:
  explicit TextStage(StageContext& context);

  std::string label() const override { return align_ ? "align" : "text"; }
  std::string describe() const override {
    return align_ ? "decoder frozen, audio -> transcript or solution" : "text -> solution or the question back";
  }
  nlohmann::json header_fields() const override { return {{"init", init_}}; }
  // Audio lengths vary about 4x: the align stage buckets them to pad less.
  int64_t bucket_window() const override { return align_ ? 8 : 0; }
  StepStats prepare_step(int64_t step, const data::Batch& batch, StepTimer& timer) override;
  MicroBatchLoss forward(const MicroBatch& micro, StepTimer& timer) override;
  Validation validate() override;

 private:
  Input input() const { return align_ ? Input::kAudio : Input::kText; }
  Task task_of(int64_t row) const;
  double validation_loss();
  double step_flops(const data::Batch& part, const model::DecoderBatch& inputs) const;

  StageContext& c_;
  bool align_ = false;
  std::string init_;
  // The current step's: the task of each local item, and the loss scale dp / global tokens.
  std::vector<Task> tasks_;
  double scale_ = 0;
};

TextStage::TextStage(StageContext& context) : c_(context), align_(context.config.train.stage == StageName::kAlign) {
  const TrainConfig& tc = c_.config.train;
  init_ = !tc.init.empty() ? tc.init : align_ ? tc.run_dir + "/text/model.h5" : "";
  const std::string hf_directory = hf::hf_directory(c_.config.model.source);
  if (align_ && tc.init.empty() && !hf_directory.empty() && access(init_.c_str(), R_OK) != 0) {
    // A pretrained decoder needs no text stage: align it as it came (open_stage_context loaded it).
    CORD_LOG(kInfo) << "train align: no " << init_ << ", so the decoder is " << hf_directory << "'s as loaded";
    init_.clear();
  }
  if (!init_.empty()) {
    const ckpt::WeightsHeader header = ckpt::load_weights(init_, c_.model);
    ckpt::check_same_vocab(header, c_.vocabulary_fingerprint(), tc.corpus);
    CORD_LOG(kInfo) << "train " << label() << ": starting from " << init_ << " (stage " << header.stage << ", "
                    << header.step << " steps, commit " << header.commit << ")";
  }
  if (align_) {
    model::set_trainable_groups(*c_.model, split_comma_list(tc.align_trainable));
  } else {
    model::set_trainable(*c_.model->encoder, false);
    model::set_trainable(*c_.model->projector, false);
  }
}

Task TextStage::task_of(int64_t row) const {
  const TrainConfig& tc = c_.config.train;
  const double share = align_ ? tc.align_solution_fraction : 1.0 - tc.text_repeat_fraction;
  const uint64_t draw =
      data::mix64(data::mix64(static_cast<uint64_t>(tc.seed) ^ 0x7461736bULL) + static_cast<uint64_t>(row));
  const double u = static_cast<double>(draw >> 11) * 0x1.0p-53;
  return u < share ? Task::kSolve : Task::kTranscribe;
}

StepStats TextStage::prepare_step(int64_t /*step*/, const data::Batch& batch, StepTimer& /*timer*/) {
  tasks_.clear();
  for (const int64_t row : batch.items) tasks_.push_back(task_of(row));
  // Response tokens of the whole global batch: the loss is their mean.
  int64_t local_tokens = 0;
  for (int64_t b = 0; b < static_cast<int64_t>(batch.items.size()); ++b) {
    local_tokens += eval::response_length(batch, b, tasks_[static_cast<size_t>(b)]);
  }
  at::Tensor counts = torch::tensor({local_tokens}, torch::kInt64);
  const comm::ProcessGroup& dp = c_.groups.dp;
  if (dp.size() > 1) comm::all_reduce(dp, counts, comm::ReduceOp::kSum);
  // The synchronizer averages over dp, so each rank's share is scaled up by dp.
  scale_ = static_cast<double>(dp.size()) / static_cast<double>(counts.item<int64_t>());
  return {};
}

MicroBatchLoss TextStage::forward(const MicroBatch& micro, StepTimer& /*timer*/) {
  const std::vector<Task> tasks(tasks_.begin() + micro.begin, tasks_.begin() + micro.end);
  const model::DecoderBatch inputs = eval::training_inputs(c_.model, micro.part, input(), tasks);
  const at::Tensor logits = c_.model->decoder->forward(inputs.embeds, inputs.positions, inputs.mask);
  MicroBatchLoss out;
  out.loss = model::response_cross_entropy(logits, inputs.targets, c_.groups.tp).sum * scale_;
  out.stats.flops = step_flops(micro.part, inputs);
  out.stats.positions =
      static_cast<double>(std::accumulate(inputs.lengths.begin(), inputs.lengths.end(), int64_t{0}));
  return out;
}

// Model FLOPs of one forward+backward over `part` (PaLM convention, model_stats.hpp): 3x
// forward for trained parts; a frozen decoder costs 2x forward (input gradients only).
double TextStage::step_flops(const data::Batch& part, const model::DecoderBatch& inputs) const {
  const int64_t positions = std::accumulate(inputs.lengths.begin(), inputs.lengths.end(), int64_t{0});
  const int64_t context = inputs.embeds.size(1);
  const int64_t frames = part.features.size(1);
  const model::ModelStats stats = model::compute_model_stats(c_.config.model, context, std::max<int64_t>(frames, 1));
  const double decoder = (align_ ? 2.0 : 3.0) * stats.decoder_forward_flops_per_token * static_cast<double>(positions);
  const double encoder = align_ ? 3.0 * stats.encoder_forward_flops_per_frame *
                                      static_cast<double>(part.feature_lengths.sum().item<int64_t>())
                                : 0.0;
  return decoder + encoder;
}

// Mean response-token loss of the solve task over the first train.val_items items of the
// validation split (dealt round-robin to the dp ranks), under no-grad.
double TextStage::validation_loss() {
  torch::NoGradGuard no_grad;
  const comm::ProcessGroups& groups = c_.groups;
  const data::CorpusReader& corpus = *c_.corpus;
  std::vector<int64_t> rows;
  int64_t seen = 0;
  for (int64_t row = 0; row < corpus.size() && seen < c_.config.train.val_items; ++row) {
    if (corpus.split(row) != data::Split::kValidation) continue;
    if (seen++ % groups.dp.size() == groups.dp.rank()) rows.push_back(row);
  }
  at::Tensor totals = torch::zeros({2}, torch::kDouble);  // [loss sum, tokens]
  const auto chunk = static_cast<size_t>(std::max<int64_t>(1, c_.config.eval.batch));
  for (size_t begin = 0; begin < rows.size(); begin += chunk) {
    const data::Batch batch =
        data::load_batch(corpus, {rows.begin() + begin, rows.begin() + std::min(rows.size(), begin + chunk)});
    const model::AutocastScope autocast(c_.precision, c_.torch_device());
    const model::DecoderBatch inputs =
        eval::training_inputs(c_.model, batch, input(), std::vector<Task>(batch.items.size(), Task::kSolve));
    const at::Tensor logits = c_.model->decoder->forward(inputs.embeds, inputs.positions, inputs.mask);
    const model::TokenLoss loss = model::response_cross_entropy(logits, inputs.targets, groups.tp);
    totals[0] += loss.sum.item<double>();
    totals[1] += static_cast<double>(loss.tokens);
  }
  if (groups.dp.size() > 1) comm::all_reduce(groups.dp, totals, comm::ReduceOp::kSum);
  return totals[1].item<double>() > 0 ? totals[0].item<double>() / totals[1].item<double>() : 0.0;
}

// The loss of the solve task on the stage's input, and greedy accuracy.
Validation TextStage::validate() {
  const double loss = validation_loss();
  eval::EvalOptions options;
  options.split = data::Split::kValidation;
  options.max_items = c_.config.train.val_items;
  options.text = !align_;
  options.audio = align_;
  options.max_new_tokens = c_.config.eval.max_new_tokens;
  options.batch = c_.config.eval.batch;
  options.precision = c_.precision;
  const eval::EvalOutcome outcome = eval::evaluate(c_.model, *c_.corpus, options, c_.groups);
  const double accuracy = align_ ? outcome.scores.audio_accuracy() : outcome.scores.text_accuracy();
  std::ostringstream summary;
  summary << "loss " << std::fixed << std::setprecision(4) << loss << " | " << eval::input_name(input())
          << " accuracy " << std::setprecision(1) << accuracy << "%";
  return {{{"loss", loss}, {"accuracy", accuracy}, {"scores", eval::scores_json(outcome.scores)}}, summary.str()};
}

}  // namespace

std::unique_ptr<Stage> make_text_stage(StageContext& context) { return std::make_unique<TextStage>(context); }

}  // namespace cord::train
