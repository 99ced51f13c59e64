#include "cord/distill/rollouts.hpp"

#include <algorithm>

#include "cord/core/error.hpp"
#include "cord/model/generate.hpp"

namespace cord::distill {

MethodPlan plan_for(const CordConfig& cord) {
  MethodPlan plan;
  plan.name = name_of(cord.method);
  switch (cord.method) {
    case Method::kCord:
    case Method::kCordUnweighted:
    case Method::kOpd: {
      plan.token_loss = TokenLoss::kReverseKl;
      plan.token_input = eval::Input::kAudio;
      const bool weighted = cord.method != Method::kCordUnweighted;
      plan.alpha = weighted ? cord.alpha : 1.0;
      plan.beta = weighted ? cord.beta : 1.0;
      break;
    }
    case Method::kSft:
    case Method::kFkl:
      plan.token_loss = cord.method == Method::kSft ? TokenLoss::kCrossEntropy : TokenLoss::kForwardKl;
      plan.token_input = eval::Input::kText;
      break;
    case Method::kGrpo: break;
  }
  plan.grpo = cord.method == Method::kCord || cord.method == Method::kCordUnweighted || cord.method == Method::kGrpo;
  plan.group_size = plan.grpo ? cord.group_size : 0;
  plan.token_on_group = cord.token_rollouts == TokenRollouts::kGroup;
  plan.fkl_mixture = cord.fkl_mixture;
  CORD_CHECK(!plan.token_on_group || (plan.grpo && plan.token_loss == TokenLoss::kReverseKl),
             "cord.token_rollouts=group needs GRPO rollouts and a reverse-KL token loss");
  CORD_CHECK(plan.fkl_mixture == 0 || plan.token_loss == TokenLoss::kReverseKl,
             "cord.fkl_mixture needs a reverse-KL token loss");
  return plan;
}

namespace {

// One decode: the rows one model writes, each with its temperature.
struct DecodeRows {
  std::vector<model::SequenceSpec> specs;
  std::vector<double> temperatures;
};

// What one decode wrote, the width of its (left-padded) prompts and the token limit used.
struct Decoded {
  model::TokenRows tokens;
  int64_t prompt_width = 0;
  int64_t max_new_tokens = 0;
};

// Decodes `rows` with `model` (KV-cached, one batched call). `frames` may be undefined
// when no row is audio. Responses are limited so that they also fit behind a prompt
// `reserve_width` positions wide (a text-side rollout the student later reads behind its
// audio prompt).
Decoded decode(model::Lalm& model, const DecodeRows& rows, const at::Tensor& frames, const at::Tensor& frame_lengths,
               const CordConfig& cord, at::Generator& generator, int64_t reserve_width) {
  Decoded out;
  if (rows.specs.empty()) return out;
  const model::SpecialTokens tokens = eval::ModelVocabulary::tokens_of(model->config());
  const model::DecoderBatch inputs =
      model::assemble_sequences(model, frames, frame_lengths, rows.specs, tokens, model::Padding::kLeft);
  out.prompt_width = inputs.embeds.size(1);
  const int64_t width = std::max<int64_t>(out.prompt_width, reserve_width);
  out.max_new_tokens = std::min<int64_t>(cord.max_new_tokens, model->config().max_seq_len - width);
  CORD_CHECK(out.max_new_tokens > 0, "prompts of " + std::to_string(width) +
                                         " positions leave no room for a rollout within model.max_seq_len " +
                                         std::to_string(model->config().max_seq_len));
  model::SamplingOptions options;
  options.max_new_tokens = out.max_new_tokens;
  options.temperatures = rows.temperatures;
  out.tokens = model::generate(model, inputs, tokens, options, generator).tokens;
  return out;
}

}  // namespace

Rollouts generate_rollouts(model::Lalm& model, model::Lalm& teacher, const data::Batch& batch,
                           const MethodPlan& plan, const CordConfig& cord, at::Generator& generator,
                           model::Precision precision) {
  torch::NoGradGuard no_grad;
  const at::Device device = model->decoder->embedding->weight.device();
  const model::AutocastScope autocast(precision, device);
  const int64_t prompts = static_cast<int64_t>(batch.items.size());
  const model::TokenRows questions = eval::token_rows(batch.question, batch.question_mask);
  const auto [frames, frame_lengths] =
      model->encode_audio(batch.features.to(device), batch.feature_lengths.to(device));

  // Audio rows are the student's; text rows (the text-side token rollouts of sft and fkl,
  // the references of GRPO) are the teacher's. With the current weights as teacher both
  // are one decode; a frozen teacher decodes its rows in a second call.
  const bool separate_teacher = teacher.get() != model.get();
  DecodeRows student_rows, teacher_rows;
  enum class Kind { kToken, kGroup, kReference };
  struct Slot {
    Kind kind;
    bool by_teacher;
  };
  std::vector<Slot> order;  // per prompt: [token rollout][N group rollouts][reference]
  auto add = [&](int64_t prompt, eval::Input input, double temperature, Kind kind) {
    model::SequenceSpec spec;
    if (input == eval::Input::kAudio) {
      spec.audio_row = prompt;
    } else {
      spec.question = questions[static_cast<size_t>(prompt)];
    }
    const bool by_teacher = separate_teacher && input == eval::Input::kText;
    DecodeRows& rows = by_teacher ? teacher_rows : student_rows;
    rows.specs.push_back(std::move(spec));
    rows.temperatures.push_back(temperature);
    order.push_back({kind, by_teacher});
  };
  for (int64_t p = 0; p < prompts; ++p) {
    if (plan.token_rollout()) add(p, plan.token_input, cord.token_temperature, Kind::kToken);
    for (int64_t i = 0; i < plan.group_size; ++i) add(p, eval::Input::kAudio, cord.group_temperature, Kind::kGroup);
    if (plan.references()) add(p, eval::Input::kText, cord.reference_temperature, Kind::kReference);
  }

  Decoded by_student = decode(model, student_rows, frames, frame_lengths, cord, generator, 0);
  // The teacher's rows get the limit the audio prompts leave (as in one decode). With a
  // separate teacher the student's rows are all audio, one or more per prompt, so their
  // width is the audio prompts'; only sft and fkl (no student rows) assemble them for it.
  int64_t audio_width = by_student.prompt_width;
  if (!teacher_rows.specs.empty() && student_rows.specs.empty()) {
    std::vector<model::SequenceSpec> audio_prompts(static_cast<size_t>(prompts));
    for (int64_t p = 0; p < prompts; ++p) audio_prompts[static_cast<size_t>(p)].audio_row = p;
    audio_width = model::assemble_sequences(model, frames, frame_lengths, audio_prompts,
                                            eval::ModelVocabulary::tokens_of(model->config()), model::Padding::kLeft)
                      .embeds.size(1);
  }
  Decoded by_teacher = decode(teacher, teacher_rows, at::Tensor(), at::Tensor(), cord, generator, audio_width);
  Rollouts out;
  out.max_new_tokens = std::max(by_student.max_new_tokens, by_teacher.max_new_tokens);
  size_t next_student = 0, next_teacher = 0;
  for (const Slot& slot : order) {
    std::vector<int64_t>& tokens =
        slot.by_teacher ? by_teacher.tokens[next_teacher++] : by_student.tokens[next_student++];
    model::TokenRows& target = slot.kind == Kind::kToken   ? out.token
                               : slot.kind == Kind::kGroup ? out.group
                                                           : out.reference;
    target.push_back(std::move(tokens));
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

namespace {

// The teacher's forward over each text question + rollout: the final hidden states at the
// predicting positions, or the logits there when `logits`.
at::Tensor teacher_response_pass(model::Lalm& teacher, const model::TokenRows& questions,
                                 const model::TokenRows& responses, int64_t width, bool logits) {
  CORD_CHECK(questions.size() == responses.size(), "one question per rollout expected");
  torch::NoGradGuard no_grad;
  std::vector<model::SequenceSpec> specs(questions.size());
  for (size_t r = 0; r < questions.size(); ++r) {
    specs[r].question = questions[r];
    specs[r].response = responses[r];
  }
  const model::DecoderBatch inputs =
      model::assemble_sequences(teacher, at::Tensor(), at::Tensor(), specs,
                                eval::ModelVocabulary::tokens_of(teacher->config()), model::Padding::kRight);
  const at::Tensor hidden = teacher->decoder->hidden(inputs.embeds, inputs.positions, inputs.mask);
  // The logits path applies the head to every position before gathering, as it always has
  // (the same numbers bit for bit); the chunked path gathers the hidden states only.
  return response_logits(logits ? teacher->decoder->logits(hidden) : hidden, inputs, responses, width).logits;
}

}  // namespace

at::Tensor teacher_response_logits(model::Lalm& teacher, const model::TokenRows& questions,
                                   const model::TokenRows& responses, int64_t width) {
  return teacher_response_pass(teacher, questions, responses, width, /*logits=*/true);
}

at::Tensor teacher_response_hidden(model::Lalm& teacher, const model::TokenRows& questions,
                                   const model::TokenRows& responses, int64_t width) {
  return teacher_response_pass(teacher, questions, responses, width, /*logits=*/false);
}

}  // namespace cord::distill
