// `cord generate`: continuations of a user's own prompts by a model (the decoder of a
// Hugging Face directory given as model.source = hf:DIR, or a cord weights file).
//   --prompt TEXT       a user turn (repeatable), rendered with the model's chat template
//                       (hf/chat_template.hpp; --system sets the system turn, --raw skips
//                       the template) and encoded by its tokenizer.json
//   --prompts FILE      JSON lines, each {"prompt": TEXT} or {"messages": [{role, content}..]}
//   --ids "1 2 3"       a prompt as token ids (repeatable)
//   --out FILE          one JSON line per prompt: {"prompt_ids", "ids", "text"} (text when
//                       the model has a tokenizer)
//   --logits-out FILE   a safetensors file with the float32 logits of every prompt position
//                       (tensor "logits.N", [prompt length, vocab]) from one unpadded
//                       forward pass per prompt: what the transformers oracle compares
// Every prompt is decoded in one left-padded batch with the KV cache, greedy unless
// --temperature. Under tp every rank holds its slices and all tp ranks agree on the
// tokens; dp ranks each decode every prompt (a tool for small prompt sets).
#include <unistd.h>

#include <fstream>
#include <optional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cord/app/commands.hpp"
#include "cord/app/runtime.hpp"
#include "command_model.hpp"
#include "cord/ckpt/model_weights.hpp"
#include "cord/core/files.hpp"
#include "cord/core/log.hpp"
#include "cord/hf/bpe_tokenizer.hpp"
#include "cord/hf/chat_template.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/hf/hf_model.hpp"
#include "cord/hf/safetensors.hpp"
#include "cord/model/batch.hpp"
#include "cord/model/generate.hpp"
#include "cord/model/precision.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace cord::app {
namespace {

void add_options(po::options_description& options) {
  options.add_options()
      ("prompt", po::value<std::vector<std::string>>()->value_name("TEXT"),
       "a user turn, through the model's chat template and tokenizer (repeatable)")
      ("prompts", po::value<std::string>()->value_name("FILE"),
       "JSON lines of {\"prompt\": TEXT} or {\"messages\": [{\"role\", \"content\"}, ...]}")
      ("system", po::value<std::string>()->value_name("TEXT"),
       "the system turn of --prompt prompts (default: the template's own, if any)")
      ("raw", po::bool_switch(), "encode each prompt's one text as it is, without the chat template")
      ("ids", po::value<std::vector<std::string>>()->value_name("IDS"),
       "a prompt as token ids separated by spaces or commas (repeatable)")
      ("weights", po::value<std::string>()->value_name("PATH"),
       "a cord weights file (RUN/STAGE/model.h5) or a training checkpoint (RUN/STAGE/checkpoints/step-N.h5) to load "
       "instead of model.source's weights")
      ("max-new-tokens", po::value<int64_t>()->default_value(64)->value_name("N"), "tokens to generate per prompt")
      ("temperature", po::value<double>()->default_value(0.0)->value_name("T"), "0 = greedy")
      ("seed", po::value<int64_t>()->default_value(0)->value_name("S"), "sampling seed (temperature > 0)")
      ("eos", po::value<int64_t>()->value_name("ID"),
       "stop token (default: config.json's first eos_token_id, or the built-in model's eos)")
      ("out", po::value<std::string>()->value_name("FILE"), "JSON lines of the generations (default: stdout)")
      ("logits-out", po::value<std::string>()->value_name("FILE"),
       "safetensors file with every prompt position's logits (logits.N, float32)");
}

std::vector<int64_t> parse_ids(const std::string& text, int64_t vocab_size) {
  std::string spaced = text;
  for (char& c : spaced) c = c == ',' ? ' ' : c;
  std::istringstream in(spaced);
  std::vector<int64_t> ids;
  std::string word;
  while (in >> word) {
    size_t used = 0;
    int64_t id = -1;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || id < 0 || id >= vocab_size) {
      throw UsageError("cord generate --ids '" + text + "': '" + word + "' is not a token id in [0, " +
                       std::to_string(vocab_size) + ")");
    }
    ids.push_back(id);
  }
  if (ids.empty()) throw UsageError("cord generate --ids '" + text + "' holds no token ids");
  return ids;
}

struct Setup {
  model::Lalm model{nullptr};
  std::vector<std::vector<int64_t>> prompts;
  model::SpecialTokens tokens;
  std::optional<hf::BpeTokenizer> tokenizer;  // the hf: directory's, when it has one
  std::string described;  // where the weights came from, for the log
};

std::vector<int64_t> widen(const std::vector<int32_t>& ids) { return {ids.begin(), ids.end()}; }

std::vector<hf::ChatMessage> parse_messages(const nlohmann::json& line, const std::string& where) {
  std::vector<hf::ChatMessage> messages;
  if (line.contains("prompt") && line["prompt"].is_string()) {
    messages.push_back({"user", line["prompt"].get<std::string>()});
  } else if (line.contains("messages") && line["messages"].is_array()) {
    for (const nlohmann::json& message : line["messages"]) {
      if (!message.is_object() || !message.contains("role") || !message["role"].is_string() ||
          !message.contains("content") || !message["content"].is_string()) {
        throw UsageError(where + ": a message is not {\"role\": TEXT, \"content\": TEXT}");
      }
      messages.push_back({message["role"].get<std::string>(), message["content"].get<std::string>()});
    }
  } else {
    throw UsageError(where + ": neither a \"prompt\" string nor a \"messages\" list");
  }
  return messages;
}

// Text prompts -> ids through the chat template (or as they are with --raw).
void add_text_prompts(Setup& s, const po::variables_map& options, const std::string& directory) {
  std::vector<std::vector<hf::ChatMessage>> conversations;
  for (const std::string& text : options.count("prompt") ? options["prompt"].as<std::vector<std::string>>()
                                                         : std::vector<std::string>{}) {
    std::vector<hf::ChatMessage> messages;
    if (options.count("system") != 0) messages.push_back({"system", options["system"].as<std::string>()});
    messages.push_back({"user", text});
    conversations.push_back(std::move(messages));
  }
  if (options.count("prompts") != 0) {
    const std::string path = options["prompts"].as<std::string>();
    std::ifstream in(path);
    if (!in) throw UsageError("cord generate --prompts: cannot read " + path);
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      if (line.empty()) continue;
      const std::string where = path + ":" + std::to_string(number);
      const nlohmann::json parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (parsed.is_discarded() || !parsed.is_object()) throw UsageError(where + " is not a JSON object");
      conversations.push_back(parse_messages(parsed, where));
    }
  }
  if (conversations.empty()) return;
  if (!s.tokenizer) throw UsageError("cord generate: text prompts need model.source = hf:DIR with a tokenizer.json");
  const bool raw = options["raw"].as<bool>();
  const std::optional<hf::ChatTemplate> chat =
      raw ? std::nullopt : std::optional<hf::ChatTemplate>(hf::ChatTemplate::from_model_directory(directory));
  for (const auto& messages : conversations) {
    if (raw && messages.size() != 1) {
      throw UsageError("cord generate --raw encodes one text per prompt: no --system and no multi-turn messages");
    }
    s.prompts.push_back(raw ? widen(s.tokenizer->encode(messages.front().content, /*add_special_tokens=*/true))
                            : widen(s.tokenizer->encode(chat->render(messages, true))));
  }
}

Setup set_up(const Session& session, const po::variables_map& options) {
  const Config& config = session.config;
  Setup s;
  const std::string directory = hf::hf_directory(config.model.source);
  if (!directory.empty() && access((directory + "/tokenizer.json").c_str(), R_OK) == 0) {
    s.tokenizer = hf::BpeTokenizer::from_file(directory + "/tokenizer.json");
  }
  add_text_prompts(s, options, directory);
  for (const std::string& text : options.count("ids") ? options["ids"].as<std::vector<std::string>>()
                                                      : std::vector<std::string>{}) {
    s.prompts.push_back(parse_ids(text, config.model.vocab_size));
  }
  if (s.prompts.empty()) throw UsageError("cord generate: give at least one prompt (--prompt, --prompts or --ids)");
  CommandModel loaded = load_command_model(
      "generate", config.model, session.groups, options.count("weights") ? options["weights"].as<std::string>() : "");
  s.model = loaded.model;
  s.described = loaded.weights;
  s.model->to(torch::Device(session.device));
  s.model->eval();
  if (options.count("eos") != 0) {
    s.tokens.eos = options["eos"].as<int64_t>();
  } else if (!directory.empty()) {
    // Only the stop token is wanted from config.json here (loading already applied the rest).
    ModelConfig resolved = config.model;
    const hf::HfModelInfo info = hf::resolve_model_source(resolved);
    if (!info.eos_token_ids.empty()) s.tokens.eos = info.eos_token_ids.front();
  }
  s.tokens.pad = s.tokens.eos;  // only fills finished rows; never attended to
  return s;
}

// Left-padded prompts -> the decoder's generation batch (see batch.hpp).
model::DecoderBatch prompt_batch(model::Lalm& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const at::Device& device) {
  int64_t width = 0;
  for (const auto& prompt : prompts) width = std::max<int64_t>(width, static_cast<int64_t>(prompt.size()));
  const int64_t batch = static_cast<int64_t>(prompts.size());
  at::Tensor ids = torch::zeros({batch, width}, torch::kLong);
  at::Tensor valid = torch::zeros({batch, width}, torch::kBool);
  for (int64_t b = 0; b < batch; ++b) {
    const auto& prompt = prompts[static_cast<size_t>(b)];
    const int64_t pad = width - static_cast<int64_t>(prompt.size());
    ids[b].narrow(0, pad, static_cast<int64_t>(prompt.size())).copy_(torch::tensor(prompt, torch::kLong));
    valid[b].narrow(0, pad, static_cast<int64_t>(prompt.size())).fill_(true);
  }
  ids = ids.to(device);
  valid = valid.to(device);
  model::DecoderBatch out;
  out.embeds = model->decoder->embed(ids);
  out.valid = valid;
  out.positions = model::left_padded_positions(valid);
  out.mask = model::left_padded_mask(valid);
  return out;
}

// One unpadded causal forward per prompt: [T, V] float32 logits each.
std::vector<std::pair<std::string, at::Tensor>> prompt_logits(model::Lalm& model,
                                                              const std::vector<std::vector<int64_t>>& prompts,
                                                              const at::Device& device) {
  std::vector<std::pair<std::string, at::Tensor>> logits;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const at::Tensor ids = torch::tensor(prompts[i], torch::kLong).unsqueeze(0).to(device);
    const int64_t steps = ids.size(1);
    const at::Tensor positions = torch::arange(steps, ids.options()).unsqueeze(0);
    const at::Tensor shard = model->decoder->forward(model->decoder->embed(ids), positions, {true, std::nullopt});
    const at::Tensor full = model::gather_vocab(shard, model->tp_group(), model->config().vocab_size);
    logits.emplace_back("logits." + std::to_string(i), full.squeeze(0).to(torch::kFloat).cpu());
  }
  return logits;
}

void write_generations(const std::string& path, const Setup& s, const model::Generation& generation) {
  std::ostringstream lines;
  for (size_t i = 0; i < s.prompts.size(); ++i) {
    json line{{"prompt_ids", s.prompts[i]}, {"ids", generation.tokens[i]}};
    if (s.tokenizer) {
      const std::vector<int32_t> ids(generation.tokens[i].begin(), generation.tokens[i].end());
      line["text"] = s.tokenizer->decode(ids, /*skip_special_tokens=*/true);
    }
    lines << line.dump() << "\n";
  }
  if (path.empty()) {
    std::cout << lines.str() << std::flush;
  } else {
    write_file_atomically(path, lines.str());
  }
}

int run(const Session& session, const po::variables_map& options) {
  Setup s = run_agreed(session.world, [&] { return set_up(session, options); });
  const at::Device device(session.device);
  const model::Precision precision = model::resolve_precision(session.config.runtime.precision, session.device);
  model::SamplingOptions sampling;
  sampling.max_new_tokens = options["max-new-tokens"].as<int64_t>();
  sampling.temperature = options["temperature"].as<double>();
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options["seed"].as<int64_t>());
  torch::NoGradGuard no_grad;
  const model::AutocastScope autocast(precision, device);
  std::vector<std::pair<std::string, at::Tensor>> logits;
  if (options.count("logits-out") != 0) logits = prompt_logits(s.model, s.prompts, device);
  const auto start = std::chrono::steady_clock::now();
  const model::Generation generation =
      model::generate(s.model, prompt_batch(s.model, s.prompts, device), s.tokens, sampling, generator);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t generated = 0;
  for (const auto& row : generation.tokens) generated += static_cast<int64_t>(row.size());
  CORD_LOG(kInfo) << "generate: " << s.prompts.size() << " prompts, " << generated << " tokens from " << s.described
                  << " in " << seconds << " s (" << static_cast<int64_t>(generated / std::max(seconds, 1e-9))
                  << " tok/s, " << model::precision_name(precision) << ")";
  if (session.world.rank() == 0) {
    write_generations(options.count("out") != 0 ? options["out"].as<std::string>() : "", s, generation);
    if (!logits.empty()) hf::write_safetensors(options["logits-out"].as<std::string>(), logits);
  }
  return 0;
}

}  // namespace

Command generate_command() {
  return {"generate", "continue prompts with a model (model.source = hf:DIR, or --weights)", add_options, run};
}

}  // namespace cord::app
