#pragma once
// The sequence-level judge of CORD: reward 1 when an audio rollout's final answer agrees
// with a reference, else 0. The paper uses a distilled LLM judge; ours compares final
// answers (docs/method.md, "Judge and GRPO"; ours): numbers with a relative tolerance, anything else
// (names, colours, option letters) exactly. An interface, so that other judges plug in.
#include <memory>
#include <optional>
#include <string>

#include "cord/config/config.hpp"

namespace cord::distill {

// True when `answer` and `reference` are the same answer: both numbers within
// `tolerance` relative to max(1, |reference|), or equal strings. An unparseable side
// (nullopt) never agrees.
bool answers_agree(const std::optional<std::string>& answer, const std::optional<std::string>& reference,
                   double tolerance);

class Judge {
 public:
  virtual ~Judge() = default;
  // `rollout`: the audio rollout's final answer; `text_reference`: the final answer of
  // the text-conditioned reference rollout; `ground_truth`: the corpus answer.
  virtual int reward(const std::optional<std::string>& rollout, const std::optional<std::string>& text_reference,
                     const std::string& ground_truth) const = 0;
  virtual const char* name() const = 0;
};

// "agreement" (the default): the audio answer agrees with the text branch's answer.
// "ground_truth": the audio answer agrees with the corpus answer.
std::unique_ptr<Judge> make_judge(JudgeKind kind, double tolerance);

}  // namespace cord::distill
