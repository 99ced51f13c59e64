#include "cord/eval/prompts.hpp"

#include "cord/core/error.hpp"

namespace cord::eval {
namespace {

int64_t mask_length(const at::Tensor& mask, int64_t item) {
  return mask.size(1) == 0 ? 0 : mask[item].sum().item<int64_t>();
}

// Masks are prefixes (real values first, then padding): cut to the longest row.
at::Tensor trim(const at::Tensor& tensor, const at::Tensor& mask) {
  const int64_t width = mask.numel() == 0 ? 0 : mask.sum(1).max().item<int64_t>();
  return tensor.slice(1, 0, width).contiguous();
}

std::vector<model::PromptEnd> prompt_ends(const std::vector<Task>& tasks) {
  std::vector<model::PromptEnd> ends;
  for (const Task task : tasks) {
    ends.push_back(task == Task::kSolve ? model::PromptEnd::kSolve : model::PromptEnd::kTranscribe);
  }
  return ends;
}

model::DecoderBatch assemble(model::Lalm& model, const data::Batch& batch, Input input, const model::TokenRows& responses,
                             const std::vector<Task>& tasks, model::Padding padding) {
  const model::SpecialTokens tokens = ModelVocabulary::tokens_of(model->config());
  const std::vector<model::PromptEnd> ends = prompt_ends(tasks);
  if (input == Input::kText) {
    return model::assemble_text(model, token_rows(batch.question, batch.question_mask), responses, tokens, padding,
                                ends);
  }
  const at::Device device = model->decoder->embedding->weight.device();
  return model::assemble_audio(model, batch.features.to(device), batch.feature_lengths.to(device), responses, tokens,
                               padding, ends);
}

}  // namespace

const char* input_name(Input input) { return input == Input::kText ? "text" : "audio"; }

model::TokenRows token_rows(const at::Tensor& ids, const at::Tensor& mask, int64_t eos) {
  CORD_CHECK(ids.sizes() == mask.sizes(), "token ids and mask differ in shape");
  const at::Tensor ids_cpu = ids.to(torch::kCPU, torch::kLong).contiguous();
  const at::Tensor mask_cpu = mask.to(torch::kCPU).contiguous();
  model::TokenRows rows(static_cast<size_t>(ids.size(0)));
  auto ids_a = ids_cpu.accessor<int64_t, 2>();
  auto mask_a = mask_cpu.accessor<bool, 2>();
  for (int64_t b = 0; b < ids.size(0); ++b) {
    for (int64_t t = 0; t < ids.size(1); ++t) {
      if (mask_a[b][t]) rows[static_cast<size_t>(b)].push_back(ids_a[b][t]);
    }
    if (eos >= 0) rows[static_cast<size_t>(b)].push_back(eos);
  }
  return rows;
}

int64_t response_length(const data::Batch& batch, int64_t item, Task task) {
  return 1 + mask_length(task == Task::kSolve ? batch.solution_mask : batch.question_mask, item);
}

model::DecoderBatch training_inputs(model::Lalm& model, const data::Batch& batch, Input input,
                                    const std::vector<Task>& tasks) {
  const int64_t size = static_cast<int64_t>(batch.items.size());
  CORD_CHECK(static_cast<int64_t>(tasks.size()) == size, "one task per item expected");
  const int64_t eos = ModelVocabulary::tokens_of(model->config()).eos;
  const model::TokenRows solutions = token_rows(batch.solution, batch.solution_mask, eos);
  const model::TokenRows questions = token_rows(batch.question, batch.question_mask, eos);
  model::TokenRows responses;
  for (int64_t b = 0; b < size; ++b) {
    responses.push_back(tasks[static_cast<size_t>(b)] == Task::kSolve ? solutions[static_cast<size_t>(b)]
                                                                       : questions[static_cast<size_t>(b)]);
  }
  return assemble(model, batch, input, responses, tasks, model::Padding::kRight);
}

model::DecoderBatch generation_prompts(model::Lalm& model, const data::Batch& batch, Input input, Task task) {
  const size_t size = batch.items.size();
  return assemble(model, batch, input, model::TokenRows(size), std::vector<Task>(size, task), model::Padding::kLeft);
}

data::Batch slice_batch(const data::Batch& batch, int64_t begin, int64_t end) {
  CORD_CHECK(0 <= begin && begin < end && end <= static_cast<int64_t>(batch.items.size()), "bad batch slice");
  data::Batch out;
  out.items.assign(batch.items.begin() + begin, batch.items.begin() + end);
  out.answers.assign(batch.answers.begin() + begin, batch.answers.begin() + end);
  out.family = batch.family.slice(0, begin, end);
  out.feature_lengths = batch.feature_lengths.slice(0, begin, end);
  const at::Tensor feature_mask = batch.feature_mask.slice(0, begin, end);
  out.feature_mask = trim(feature_mask, feature_mask);
  out.features = trim(batch.features.slice(0, begin, end), feature_mask);
  const at::Tensor question_mask = batch.question_mask.slice(0, begin, end);
  out.question_mask = trim(question_mask, question_mask);
  out.question = trim(batch.question.slice(0, begin, end), question_mask);
  const at::Tensor solution_mask = batch.solution_mask.slice(0, begin, end);
  out.solution_mask = trim(solution_mask, solution_mask);
  out.solution = trim(batch.solution.slice(0, begin, end), solution_mask);
  return out;
}

}  // namespace cord::eval
