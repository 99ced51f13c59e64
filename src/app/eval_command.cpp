// `cord eval`: greedy accuracy with text and with audio input per family, the gap, and
// the transcript word error rate, on one split of a corpus (eval/evaluate.hpp).
//   OUT/eval.json         scores, with the weights, corpus, split, commit, host, command, timing
//   OUT/eval.md           the same as a Markdown table (also printed on stdout)
//   OUT/predictions.jsonl one line per item: answer, decoded text/audio solutions, transcript
// With --baseline (a base model's eval.json of the same split), eval.json and eval.md also
// hold the comparison with it: the gap reduction and the text-accuracy change (eval/comparison.hpp).
// With --reference (a base model's weights), they also hold KL(reference || these weights) of
// the text branch per family: how far the text branch moved (distill/text_divergence.hpp).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "cord/app/commands.hpp"
#include "cord/app/runtime.hpp"
#include "cord/ckpt/model_weights.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/core/build_info.hpp"
#include "cord/core/files.hpp"
#include "cord/core/log.hpp"
#include "cord/data/corpus.hpp"
#include "cord/distill/text_divergence.hpp"
#include "cord/eval/comparison.hpp"
#include "cord/eval/evaluate.hpp"
#include "cord/eval/vocabulary.hpp"
#include "cord/hf/hf_config.hpp"
#include "command_model.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace cord::app {
namespace {

void add_options(po::options_description& options) {
  options.add_options()
      ("ckpt", po::value<std::string>()->value_name("PATH"),
       "weights to evaluate (default: train.run_dir/align/model.h5); 'source': the decoder of model.source = hf:DIR "
       "as it is, on text input only (its audio encoder would be untrained)")
      ("data", po::value<std::string>()->value_name("PATH"), "corpus file (default: train.corpus)")
      ("out", po::value<std::string>()->value_name("DIR"),
       "folder for eval.json, eval.md and predictions.jsonl (default: train.run_dir/eval)")
      ("split", po::value<std::string>()->value_name("NAME"), "train | validation | test (default: eval.split)")
      ("baseline", po::value<std::string>()->value_name("PATH"),
       "eval.json of a baseline (or its folder), same corpus and split: also report the gap reduction against it")
      ("reference", po::value<std::string>()->value_name("PATH"),
       "weights of a reference model (the base: its align/model.h5), same architecture and vocabulary: also report "
       "KL(reference || these weights) of the text branch per family, teacher-forced on the corpus solutions "
       "(nats per token; distill/text_divergence.hpp)");
}

std::string option_or(const po::variables_map& options, const char* name, const std::string& fallback) {
  return options.count(name) != 0 ? options[name].as<std::string>() : fallback;
}

struct Setup {
  std::string ckpt, data, out;
  data::Split split = data::Split::kTest;
  std::unique_ptr<data::CorpusReader> corpus;
  model::Lalm model{nullptr};
  ckpt::WeightsHeader weights;
  bool text_only = false;     // --ckpt source
  std::string baseline_path;  // "" = no comparison
  json baseline;
  std::string reference_path;  // "" = no text-branch divergence
  model::Lalm reference{nullptr};
};

// The baseline's eval.json (PATH or PATH/eval.json), checked to score the same split.
json read_baseline(const std::string& path, data::Split split) {
  std::ifstream in(path);
  if (!in) throw UsageError("cord eval --baseline: cannot read " + path);
  json baseline = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (baseline.is_discarded() || !baseline.is_object()) {
    throw UsageError("cord eval --baseline: " + path + " is not a JSON object (a cord eval.json)");
  }
  const std::string want = data::split_name(split);
  if (baseline.value("split", want) != want) {
    throw UsageError("cord eval --baseline: " + path + " scored split " + baseline.value("split", std::string()) +
                     ", this eval scores " + want);
  }
  return baseline;
}

Setup set_up(const Session& session, const po::variables_map& options) {
  const Config& config = session.config;
  Setup s;
  s.ckpt = option_or(options, "ckpt", config.train.run_dir + "/align/model.h5");
  s.data = option_or(options, "data", config.train.corpus);
  s.out = option_or(options, "out", config.train.run_dir + "/eval");
  s.split = data::parse_split(option_or(options, "split", name_of(config.eval.split)), "--split");
  if (access(s.data.c_str(), R_OK) != 0) throw UsageError("cord eval: corpus " + s.data + " does not exist");
  if (options.count("baseline") != 0) {
    s.baseline_path = options["baseline"].as<std::string>();
    if (std::filesystem::is_directory(s.baseline_path)) s.baseline_path += "/eval.json";
    s.baseline = read_baseline(s.baseline_path, s.split);
  }
  s.corpus = eval::open_corpus_for(s.data, config.model);
  if (s.ckpt == "source") {
    if (hf::hf_directory(config.model.source).empty()) {
      throw UsageError("cord eval --ckpt source: model.source is the built-in model, which has no weights of its own");
    }
    s.model = load_command_model("eval", config.model, session.groups, "").model;
    s.weights.stage = "source";
    s.text_only = true;
  } else {
    s.model = model::Lalm(config.model, session.groups.tp);
    s.weights = ckpt::load_weights(s.ckpt, s.model);
    ckpt::check_same_vocab(s.weights, eval::ModelVocabulary(config.model, s.corpus->tokenizer()).fingerprint(),
                           s.data);
  }
  s.model->to(torch::Device(session.device));
  if (options.count("reference") != 0) {
    if (s.text_only) throw UsageError("cord eval --reference: --ckpt source has no weights of cord's to compare");
    s.reference_path = options["reference"].as<std::string>();
    if (access(s.reference_path.c_str(), R_OK) != 0) {
      throw UsageError("cord eval --reference: " + s.reference_path + " does not exist");
    }
    s.reference = model::Lalm(config.model, session.groups.tp);
    const ckpt::WeightsHeader header = ckpt::load_weights(s.reference_path, s.reference);
    ckpt::check_same_vocab(header, eval::ModelVocabulary(config.model, s.corpus->tokenizer()).fingerprint(), s.data);
    s.reference->to(torch::Device(session.device));
  }
  if (session.world.rank() == 0) make_directories(s.out);
  return s;
}

// KL(reference || model) of the text branch, as eval.json's "text_kl_from_reference" and
// a Markdown paragraph.
std::pair<json, std::string> text_divergence_report(const distill::TextDivergence& kl, const std::string& reference) {
  json families = json::object();
  std::string table = "\nKL(reference || these weights) of the text branch on the corpus solutions (nats/token), "
                      "reference " + reference + ":\n\n| family | solution tokens | KL |\n|---|---:|---:|\n";
  char row[160];
  for (int f = 0; f < data::kFamilyCount; ++f) {
    const auto family = static_cast<data::Family>(f);
    if (kl.tokens[static_cast<size_t>(f)] == 0) continue;
    families[data::family_name(family)] = {{"kl", kl.family_mean(family)}, {"tokens", kl.tokens[static_cast<size_t>(f)]}};
    std::snprintf(row, sizeof row, "| %s | %lld | %.5f |\n", data::family_name(family),
                  static_cast<long long>(kl.tokens[static_cast<size_t>(f)]), kl.family_mean(family));
    table += row;
  }
  std::snprintf(row, sizeof row, "| **average** | | **%.5f** |\n", kl.mean());
  table += row;
  return {json{{"reference", reference}, {"families", families}, {"average", kl.mean()}}, table};
}

int run(const Session& session, const po::variables_map& options) {
  Setup s = run_agreed(session.world, [&] { return set_up(session, options); });
  const EvalConfig& ec = session.config.eval;
  eval::EvalOptions eval_options;
  eval_options.split = s.split;
  eval_options.max_items = ec.max_items;
  eval_options.batch = ec.batch;
  eval_options.max_new_tokens = ec.max_new_tokens;
  eval_options.transcripts = ec.transcripts && !s.text_only;
  eval_options.audio = !s.text_only;
  eval_options.predictions = true;
  eval_options.precision = model::resolve_precision(session.config.runtime.precision, session.device);
  CORD_LOG(kInfo) << "eval: " << s.ckpt << " (stage " << s.weights.stage << ", " << s.weights.step << " steps) on "
                  << s.data << " split " << data::split_name(s.split) << ", greedy, batches of " << ec.batch;
  const eval::EvalOutcome outcome = run_agreed(session.world, [&] {
    return eval::evaluate(s.model, *s.corpus, eval_options, session.groups);
  });
  at::Tensor tokens = torch::tensor({outcome.generated_tokens}, torch::kInt64);
  comm::all_reduce(session.groups.dp, tokens, comm::ReduceOp::kSum);
  const double tokens_per_s = static_cast<double>(tokens.item<int64_t>()) / outcome.seconds;
  CORD_LOG(kInfo) << "eval: " << tokens.item<int64_t>() << " tokens decoded in " << outcome.seconds << " s ("
                  << static_cast<int64_t>(tokens_per_s) << " tok/s)";
  std::optional<distill::TextDivergence> divergence;
  if (!s.reference_path.empty()) {
    divergence = run_agreed(session.world, [&] {
      return distill::text_branch_kl(s.model, s.reference, *s.corpus, eval_options, session.groups);
    });
    CORD_LOG(kInfo) << "eval: KL(" << s.reference_path << " || " << s.ckpt << ") of the text branch "
                    << divergence->mean() << " nats/token";
  }
  json comparison;  // every rank compares (the scores are global), so a mismatch fails on all of them
  if (!s.baseline_path.empty()) {
    comparison = run_agreed(session.world, [&] {
      return eval::compare_to_baseline(eval::scores_json(outcome.scores), s.baseline, s.baseline_path);
    });
  }
  if (session.world.rank() == 0) {
    json report = eval::scores_json(outcome.scores);
    report["weights"] = s.ckpt;
    report["weights_stage"] = s.weights.stage;
    report["weights_steps"] = s.weights.step;
    report["corpus"] = s.data;
    report["split"] = data::split_name(s.split);
    report["commit"] = build_info().commit;
    report["command"] = session.command_line;
    report["host"] = session.world.host();
    report["seconds"] = outcome.seconds;
    report["decoded_tokens_per_s"] = tokens_per_s;
    std::string table = eval::scores_markdown(outcome.scores);
    if (!comparison.is_null()) {
      report["baseline"] = comparison;
      table += "\nAgainst the baseline " + s.baseline_path + " (gap = baseline text accuracy - audio accuracy; " +
               "gap reduction = 1 - gap / baseline gap):\n\n" + eval::comparison_markdown(comparison);
    }
    if (divergence) {
      auto [kl_json, kl_table] = text_divergence_report(*divergence, s.reference_path);
      report["text_kl_from_reference"] = kl_json;
      table += kl_table;
    }
    write_file_atomically(s.out + "/eval.json", report.dump(2) + "\n");
    write_file_atomically(s.out + "/eval.md", "# cord eval: " + s.ckpt + " on " + s.data + " (" +
                                                  data::split_name(s.split) + ")\n\n" + table);
    std::string predictions;
    for (const std::string& line : outcome.predictions) predictions += line + "\n";
    write_file_atomically(s.out + "/predictions.jsonl", predictions);
    std::cout << table << std::flush;
    CORD_LOG(kInfo) << "eval: wrote " << s.out << "/{eval.json,eval.md,predictions.jsonl}";
  }
  return 0;
}

}  // namespace

Command eval_command() {
  return {"eval",
          "accuracy per family with text and with audio input, the gap and the transcript WER",
          &add_options, &run};
}

}  // namespace cord::app
