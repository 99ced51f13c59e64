#include "cord/distill/rollouts.hpp"

#include <algorithm>

#include "cord/core/error.hpp"
#include "cord/model/generate.hpp"

namespace cord::distill {

MethodPlan plan_for(const CordConfig& cord) {
  MethodPlan plan;
  plan.name = cord.method;
  if (cord.method == "cord" || cord.method == "cord-unweighted" || cord.method == "opd") {
    plan.token_loss = TokenLoss::kReverseKl;
    plan.token_input = eval::Input::kAudio;
    const bool weighted = cord.method != "cord-unweighted";
    plan.alpha = weighted ? cord.alpha : 1.0;
    plan.beta = weighted ? cord.beta : 1.0;
  } else if (cord.method == "sft" || cord.method == "fkl") {
    plan.token_loss = cord.method == "sft" ? TokenLoss::kCrossEntropy : TokenLoss::kForwardKl;
    plan.token_input = eval::Input::kText;
  } else if (cord.method != "grpo") {
    throw UsageError("cord.method='" + cord.method + "' is not one of cord, cord-unweighted, opd, grpo, sft, fkl");
  }
  plan.grpo = cord.method == "cord" || cord.method == "cord-unweighted" || cord.method == "grpo";
  plan.group_size = plan.grpo ? cord.group_size : 0;
  return plan;
}

Rollouts generate_rollouts(model::Lalm& model, const data::Batch& batch, const MethodPlan& plan,
                           const CordConfig& cord, at::Generator& generator, model::Precision precision) {
  torch::NoGradGuard no_grad;
  const at::Device device = model->decoder->embedding->weight.device();
  const model::AutocastScope autocast(precision, device);
  const model::SpecialTokens tokens = eval::corpus_special_tokens();
  const int64_t prompts = static_cast<int64_t>(batch.items.size());
  const model::TokenRows questions = eval::token_rows(batch.question, batch.question_mask);
  const auto [frames, frame_lengths] =
      model->encode_audio(batch.features.to(device), batch.feature_lengths.to(device));

  // Row order of the decode: per prompt, [token rollout][N group rollouts][reference].
  std::vector<model::SequenceSpec> specs;
  std::vector<double> temperatures;
  auto add = [&](int64_t prompt, eval::Input input, double temperature) {
    model::SequenceSpec spec;
    if (input == eval::Input::kAudio) {
      spec.audio_row = prompt;
    } else {
      spec.question = questions[static_cast<size_t>(prompt)];
    }
    specs.push_back(std::move(spec));
    temperatures.push_back(temperature);
  };
  for (int64_t p = 0; p < prompts; ++p) {
    if (plan.token_loss != TokenLoss::kNone) add(p, plan.token_input, cord.token_temperature);
    for (int64_t i = 0; i < plan.group_size; ++i) add(p, eval::Input::kAudio, cord.group_temperature);
    if (plan.grpo) add(p, eval::Input::kText, cord.reference_temperature);
  }
  const model::DecoderBatch inputs =
      model::assemble_sequences(model, frames, frame_lengths, specs, tokens, model::Padding::kLeft);

  Rollouts out;
  model::SamplingOptions options;
  out.max_new_tokens = std::min<int64_t>(cord.max_new_tokens, model->config().max_seq_len - inputs.embeds.size(1));
  CORD_CHECK(out.max_new_tokens > 0, "prompts of " + std::to_string(inputs.embeds.size(1)) +
                                         " positions leave no room for a rollout within model.max_seq_len " +
                                         std::to_string(model->config().max_seq_len));
  options.max_new_tokens = out.max_new_tokens;
  options.temperatures = temperatures;
  model::Generation generation = model::generate(model, inputs, tokens, options, generator);

  size_t row = 0;
  for (int64_t p = 0; p < prompts; ++p) {
    if (plan.token_loss != TokenLoss::kNone) out.token.push_back(std::move(generation.tokens[row++]));
    for (int64_t i = 0; i < plan.group_size; ++i) out.group.push_back(std::move(generation.tokens[row++]));
    if (plan.grpo) out.reference.push_back(std::move(generation.tokens[row++]));
  }
  for (const auto& rows : {&out.token, &out.group, &out.reference}) {
    for (const auto& r : *rows) out.generated_tokens += static_cast<int64_t>(r.size());
  }
  return out;
}

ResponseLogits response_logits(const at::Tensor& logits, const model::DecoderBatch& inputs,
                               const model::TokenRows& responses, int64_t width) {
  const int64_t rows = logits.size(0);
  CORD_CHECK(static_cast<int64_t>(responses.size()) == rows, "one response per sequence expected");
  int64_t longest = 1;
  for (const auto& r : responses) longest = std::max<int64_t>(longest, static_cast<int64_t>(r.size()));
  CORD_CHECK(width == 0 || width >= longest, "response_logits: width " + std::to_string(width) +
                                                 " is shorter than a response of " + std::to_string(longest));
  if (width > 0) longest = width;
  at::Tensor index = torch::zeros({rows, longest}, torch::kLong);
  at::Tensor targets = torch::full({rows, longest}, -1, torch::kLong);
  auto index_a = index.accessor<int64_t, 2>();
  auto targets_a = targets.accessor<int64_t, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    const auto& response = responses[static_cast<size_t>(r)];
    // Right padding: the prompt's last position (its [sep]) predicts response token 0.
    const int64_t first = inputs.prompt_lengths[static_cast<size_t>(r)] - 1;
    for (int64_t t = 0; t < longest; ++t) {
      const bool real = t < static_cast<int64_t>(response.size());
      index_a[r][t] = real ? first + t : first;
      if (real) targets_a[r][t] = response[static_cast<size_t>(t)];
    }
  }
  const at::Device device = logits.device();
  index = index.to(device);
  ResponseLogits out;
  out.logits = logits.gather(1, index.unsqueeze(-1).expand({rows, longest, logits.size(2)}));
  out.targets = targets.to(device);
  out.mask = out.targets >= 0;
  return out;
}

at::Tensor teacher_response_logits(model::Lalm& teacher, const model::TokenRows& questions,
                                   const model::TokenRows& responses, int64_t width) {
  CORD_CHECK(questions.size() == responses.size(), "one question per rollout expected");
  torch::NoGradGuard no_grad;
  std::vector<model::SequenceSpec> specs(questions.size());
  for (size_t r = 0; r < questions.size(); ++r) {
    specs[r].question = questions[r];
    specs[r].response = responses[r];
  }
  const model::DecoderBatch inputs = model::assemble_sequences(teacher, at::Tensor(), at::Tensor(), specs,
                                                               eval::corpus_special_tokens(), model::Padding::kRight);
  const at::Tensor logits = teacher->decoder->forward(inputs.embeds, inputs.positions, inputs.mask);
  return response_logits(logits, inputs, responses, width).logits;
}

}  // namespace cord::distill
