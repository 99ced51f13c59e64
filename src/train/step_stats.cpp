#include "cord/train/step_stats.hpp"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <string>

#include "cord/comm/collectives.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/core/error.hpp"

namespace cord::train {
namespace {

struct StatField {
  const char* name;
  double StepStats::*member;
  bool loss_term;  // added by every optimizer pass (add_losses), not only the first
};

// Every field of StepStats, once: sums, reduction, JSON and the checkpoint walk this table.
constexpr StatField kFields[] = {
    {"loss", &StepStats::loss, true},
    {"token_loss", &StepStats::token_loss, true},
    {"sequence_loss", &StepStats::sequence_loss, true},
    {"divergence_sum", &StepStats::divergence_sum, false},
    {"divergence_tokens", &StepStats::divergence_tokens, false},
    {"reward_sum", &StepStats::reward_sum, false},
    {"rewards", &StepStats::rewards, false},
    {"rollout_tokens", &StepStats::rollout_tokens, false},
    {"rollouts", &StepStats::rollouts, false},
    {"positions", &StepStats::positions, false},
    {"flops", &StepStats::flops, false},
};
constexpr int64_t kFieldCount = sizeof kFields / sizeof kFields[0];

}  // namespace

StepStats& StepStats::operator+=(const StepStats& other) {
  for (const StatField& f : kFields) this->*f.member += other.*f.member;
  return *this;
}

void StepStats::add_losses(const StepStats& other) {
  for (const StatField& f : kFields) {
    if (f.loss_term) this->*f.member += other.*f.member;
  }
}

void StepStats::sum_over(const comm::ProcessGroup& group) {
  if (group.size() == 1) return;
  at::Tensor values = torch::empty({kFieldCount}, torch::kDouble);
  auto values_a = values.accessor<double, 1>();
  for (int64_t i = 0; i < kFieldCount; ++i) values_a[i] = this->*kFields[i].member;
  comm::all_reduce(group, values, comm::ReduceOp::kSum);
  for (int64_t i = 0; i < kFieldCount; ++i) this->*kFields[i].member = values_a[i];
}

nlohmann::json StepStats::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const StatField& f : kFields) out[f.name] = this->*f.member;
  return out;
}

StepStats StepStats::from_json(const nlohmann::json& fields) {
  StepStats stats;
  for (const StatField& f : kFields) {
    if (fields.contains(f.name)) stats.*f.member = fields.at(f.name).get<double>();
  }
  return stats;
}

double ratio_or_zero(double num, double den) { return den > 0 ? num / den : 0.0; }

double LogWindow::mean(double StepStats::*term, int dp) const {
  return ratio_or_zero(sums.*term, static_cast<double>(updates) * dp);
}

std::string LogWindow::to_text() const {
  // nlohmann writes doubles with enough digits to read back the same value.
  return nlohmann::json{{"updates", updates}, {"sums", sums.to_json()}}.dump();
}

LogWindow LogWindow::from_text(const std::string& text) {
  LogWindow window;
  if (text.empty()) return window;
  try {
    const nlohmann::json fields = nlohmann::json::parse(text);
    window.updates = fields.at("updates").get<int64_t>();
    window.sums = StepStats::from_json(fields.at("sums"));
  } catch (const std::exception& e) {
    throw Error("the checkpoint's log window '" + text + "' is not readable: " + e.what());
  }
  return window;
}

}  // namespace cord::train
