#include "cord/distill/judge.hpp"

#include <cmath>
#include <cstdlib>

#include "cord/core/error.hpp"

namespace cord::distill {
namespace {

std::optional<double> as_number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

class AgreementJudge : public Judge {
 public:
  explicit AgreementJudge(double tolerance) : tolerance_(tolerance) {}
  int reward(const std::optional<std::string>& rollout, const std::optional<std::string>& text_reference,
             const std::string&) const override {
    return answers_agree(rollout, text_reference, tolerance_) ? 1 : 0;
  }
  const char* name() const override { return "agreement"; }

 private:
  double tolerance_;
};

class GroundTruthJudge : public Judge {
 public:
  explicit GroundTruthJudge(double tolerance) : tolerance_(tolerance) {}
  int reward(const std::optional<std::string>& rollout, const std::optional<std::string>&,
             const std::string& ground_truth) const override {
    return answers_agree(rollout, ground_truth, tolerance_) ? 1 : 0;
  }
  const char* name() const override { return "ground_truth"; }

 private:
  double tolerance_;
};

}  // namespace

bool answers_agree(const std::optional<std::string>& answer, const std::optional<std::string>& reference,
                   double tolerance) {
  if (!answer || !reference) return false;
  const std::optional<double> a = as_number(*answer), r = as_number(*reference);
  if (a && r) return std::abs(*a - *r) <= tolerance * std::max(1.0, std::abs(*r));
  return *answer == *reference;
}

std::unique_ptr<Judge> make_judge(JudgeKind kind, double tolerance) {
  if (kind == JudgeKind::kAgreement) return std::make_unique<AgreementJudge>(tolerance);
  return std::make_unique<GroundTruthJudge>(tolerance);
}

}  // namespace cord::distill
