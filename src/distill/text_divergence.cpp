#include "cord/distill/text_divergence.hpp"

#include <torch/torch.h>

#include <vector>

#include "cord/comm/collectives.hpp"
#include "cord/core/progress.hpp"
#include "cord/distill/losses.hpp"
#include "cord/eval/prompts.hpp"

namespace cord::distill {
namespace {

// logits [B, T, V/P] of `model` on the solve prompts of `batch` (text input, the corpus
// solution as response), and the inputs' targets [B, T] (-1 off the solution).
std::pair<at::Tensor, at::Tensor> solution_logits(model::Lalm& model, const data::Batch& batch) {
  const std::vector<eval::Task> tasks(batch.items.size(), eval::Task::kSolve);
  const model::DecoderBatch inputs = eval::training_inputs(model, batch, eval::Input::kText, tasks);
  return {model->decoder->forward(inputs.embeds, inputs.positions, inputs.mask), inputs.targets};
}

}  // namespace

double TextDivergence::family_mean(data::Family family) const {
  const auto f = static_cast<size_t>(family);
  return tokens[f] > 0 ? kl_sum[f] / static_cast<double>(tokens[f]) : 0.0;
}

double TextDivergence::mean() const {
  double sum = 0;
  int64_t count = 0;
  for (size_t f = 0; f < kl_sum.size(); ++f) {
    sum += kl_sum[f];
    count += tokens[f];
  }
  return count > 0 ? sum / static_cast<double>(count) : 0.0;
}

TextDivergence text_branch_kl(model::Lalm& model, model::Lalm& reference, const data::CorpusReader& corpus,
                              const eval::EvalOptions& options, const comm::ProcessGroups& groups) {
  const std::vector<int64_t> rows = eval::rank_rows(corpus, options, groups.dp.rank(), groups.dp.size());
  model->eval();
  reference->eval();
  torch::NoGradGuard no_grad;
  // [kFamilyCount] KL sums and token counts of this rank, reduced over dp at the end.
  at::Tensor kl_sum = torch::zeros({data::kFamilyCount}, torch::kDouble);
  at::Tensor tokens = torch::zeros({data::kFamilyCount}, torch::kDouble);
  for (size_t begin = 0; begin < rows.size(); begin += static_cast<size_t>(options.batch)) {
    mark_progress();
    const size_t end = std::min(rows.size(), begin + static_cast<size_t>(options.batch));
    const data::Batch batch = data::load_batch(corpus, {rows.begin() + begin, rows.begin() + end});
    const auto [logits, targets] = solution_logits(model, batch);
    const auto [reference_logits, reference_targets] = solution_logits(reference, batch);
    CORD_CHECK(targets.equal(reference_targets), "text_branch_kl: the two models built different prompts");
    // KL(reference || model) per position [B, T]; forward_kl's teacher is the reference.
    const at::Tensor kl = forward_kl(logits, reference_logits, groups.tp).to(torch::kCPU, torch::kDouble);
    const at::Tensor on_solution = targets.ge(0).to(torch::kCPU, torch::kDouble);
    const at::Tensor per_row = (kl * on_solution).sum(1), count = on_solution.sum(1);  // [B]
    const at::Tensor family = batch.family.to(torch::kCPU, torch::kLong);
    kl_sum.index_add_(0, family, per_row);
    tokens.index_add_(0, family, count);
  }
  if (groups.dp.size() > 1) {
    comm::all_reduce(groups.dp, kl_sum, comm::ReduceOp::kSum);
    comm::all_reduce(groups.dp, tokens, comm::ReduceOp::kSum);
  }
  TextDivergence out;
  for (int64_t f = 0; f < data::kFamilyCount; ++f) {
    out.kl_sum[static_cast<size_t>(f)] = kl_sum[f].item<double>();
    out.tokens[static_cast<size_t>(f)] = static_cast<int64_t>(tokens[f].item<double>());
  }
  return out;
}

}  // namespace cord::distill
