#pragma once
// How far a tuned model's text branch has moved from a reference (the base): the forgetting
// measure of the transfer protocol (docs/experiments.md). RL's Razor (arXiv 2509.04259)
// finds KL(base || tuned) on held-out prompts to predict forgetting; ours is its
// teacher-forced, per-token form on the corpus solutions:
//   KL_f = (1 / |S_f|) sum over solution tokens t of items of family f
//          sum_v p_ref(v | q, y_<t) (log p_ref(v | q, y_<t) - log p(v | q, y_<t))
// with q the item's text question and y its corpus solution (eos included), both models
// fed the same prompt (eval/prompts.hpp, solve). Units: nats per token.
#include <array>
#include <cstdint>

#include "cord/comm/process_group.hpp"
#include "cord/data/corpus.hpp"
#include "cord/eval/evaluate.hpp"
#include "cord/model/lalm.hpp"

namespace cord::distill {

struct TextDivergence {
  std::array<double, data::kFamilyCount> kl_sum{};  // summed over the family's solution tokens
  std::array<int64_t, data::kFamilyCount> tokens{};
  double family_mean(data::Family family) const;    // 0 for a family with no tokens
  double mean() const;                              // over every token of the split
};

// Over the items of options.split (options.max_items, options.batch), dealt to the dp ranks
// as eval::evaluate deals them; summed over dp, so every rank returns the same. Collective
// over groups.world. `model` and `reference` must share one vocabulary and architecture.
TextDivergence text_branch_kl(model::Lalm& model, model::Lalm& reference, const data::CorpusReader& corpus,
                              const eval::EvalOptions& options, const comm::ProcessGroups& groups);

}  // namespace cord::distill
