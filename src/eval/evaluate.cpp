#include "cord/eval/evaluate.hpp"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "cord/core/progress.hpp"
#include "cord/eval/prompts.hpp"
#include "cord/model/generate.hpp"

namespace cord::eval {
namespace {


model::TokenRows greedy(model::Lalm& model, const data::Batch& batch, Input input, Task task,
                        const EvalOptions& options, int64_t& generated) {
  const model::AutocastScope autocast(options.precision, model->decoder->embedding->weight.device());
  const model::DecoderBatch prompts = generation_prompts(model, batch, input, task);
  model::SamplingOptions sampling;
  sampling.max_new_tokens = options.max_new_tokens;
  sampling.temperature = 0;  // greedy: the generator is not drawn from
  at::Generator generator = at::detail::createCPUGenerator(0);
  model::Generation generation =
      model::generate(model, prompts, ModelVocabulary::tokens_of(model->config()), sampling, generator);
  for (const auto& tokens : generation.tokens) generated += static_cast<int64_t>(tokens.size());
  return std::move(generation.tokens);
}

std::string decoded(const ModelVocabulary& vocabulary, const std::vector<int64_t>& response) {
  return vocabulary.response_text(response).value_or("<a token outside the vocabulary>");
}

}  // namespace

std::vector<int64_t> rank_rows(const data::CorpusReader& corpus, const EvalOptions& options, int dp_rank, int dp_size) {
  std::vector<int64_t> split_rows;
  for (int64_t row = 0; row < corpus.size(); ++row) {
    if (corpus.split(row) != options.split) continue;
    if (options.max_items > 0 && static_cast<int64_t>(split_rows.size()) >= options.max_items) break;
    split_rows.push_back(row);
  }
  if (split_rows.empty()) {
    throw UsageError("corpus " + corpus.path() + " has no items in split '" + data::split_name(options.split) + "'");
  }
  std::vector<int64_t> mine;
  for (size_t i = static_cast<size_t>(dp_rank); i < split_rows.size(); i += static_cast<size_t>(dp_size)) {
    mine.push_back(split_rows[i]);
  }
  std::stable_sort(mine.begin(), mine.end(),
                   [&](int64_t a, int64_t b) { return corpus.frames(a) > corpus.frames(b); });
  return mine;
}

EvalOutcome evaluate(model::Lalm& model, const data::CorpusReader& corpus, const EvalOptions& options,
                     const comm::ProcessGroups& groups) {
  const auto start = std::chrono::steady_clock::now();
  const ModelVocabulary vocabulary(model->config(), corpus.tokenizer());
  const std::vector<int64_t> rows = rank_rows(corpus, options, groups.dp.rank(), groups.dp.size());
  model->eval();
  torch::NoGradGuard no_grad;

  EvalOutcome outcome;
  outcome.scores.text = options.text;
  outcome.scores.audio = options.audio;
  outcome.scores.transcripts = options.transcripts;
  std::vector<std::string> my_predictions;
  for (size_t begin = 0; begin < rows.size(); begin += static_cast<size_t>(options.batch)) {
    mark_progress();  // a long evaluation is many batches: the hang watchdog sees them go by
    const size_t end = std::min(rows.size(), begin + static_cast<size_t>(options.batch));
    const data::Batch batch = data::load_batch(corpus, {rows.begin() + begin, rows.begin() + end});
    const size_t size = batch.items.size();
    model::TokenRows text, audio, transcripts;
    if (options.text) text = greedy(model, batch, Input::kText, Task::kSolve, options, outcome.generated_tokens);
    if (options.audio) audio = greedy(model, batch, Input::kAudio, Task::kSolve, options, outcome.generated_tokens);
    if (options.transcripts) {
      transcripts = greedy(model, batch, Input::kAudio, Task::kTranscribe, options, outcome.generated_tokens);
    }
    const model::TokenRows questions = token_rows(batch.question, batch.question_mask);
    for (size_t b = 0; b < size; ++b) {
      const int64_t family = batch.family[static_cast<int64_t>(b)].item<int64_t>();
      FamilyScore& score = outcome.scores.families.at(static_cast<size_t>(family));
      ++score.items;
      nlohmann::json line{{"row", batch.items[b]},
                          {"family", data::family_name(static_cast<data::Family>(family))},
                          {"answer", batch.answers[b]}};
      auto judge = [&](const model::TokenRows& responses, int64_t& correct, int64_t& unparsed, const char* key) {
        const std::optional<std::string> answer = extract_answer(vocabulary, responses[b]);
        const bool right = answer && *answer == batch.answers[b];
        if (!answer) ++unparsed;
        if (right) ++correct;
        if (options.predictions) {
          line[key] = decoded(vocabulary, responses[b]);
          line[std::string(key) + "_correct"] = right;  // per item, for paired bootstraps over items
        }
      };
      if (options.text) judge(text, score.text_correct, score.text_unparsed, "text");
      if (options.audio) judge(audio, score.audio_correct, score.audio_unparsed, "audio");
      if (options.transcripts) {
        const std::vector<int64_t> reference = vocabulary.words(questions[b]);
        score.word_edits += edit_distance(vocabulary.words(transcripts[b]), reference);
        score.reference_words += static_cast<int64_t>(reference.size());
        if (options.predictions) line["transcript"] = decoded(vocabulary, transcripts[b]);
      }
      if (options.predictions) my_predictions.push_back(line.dump());
    }
  }

  // Sum over dp (the tp ranks of a dp group hold the same counts).
  const std::vector<int64_t> flat = outcome.scores.flatten();
  at::Tensor counts = torch::tensor(flat, torch::kInt64);
  if (groups.dp.size() > 1) comm::all_reduce(groups.dp, counts, comm::ReduceOp::kSum);
  outcome.scores.assign_flat({counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel()});
  if (options.predictions) {
    std::string mine;
    for (const std::string& line : my_predictions) mine += line + "\n";
    if (groups.tp.rank() == 0) {
      for (const std::string& part : comm::gather_strings(groups.dp, mine, 0)) {
        std::string::size_type from = 0, to;
        while ((to = part.find('\n', from)) != std::string::npos) {
          outcome.predictions.push_back(part.substr(from, to - from));
          from = to + 1;
        }
      }
    }
  }
  outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return outcome;
}

}  // namespace cord::eval
