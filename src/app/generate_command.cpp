// `cord generate`: continuations of a user's own prompts by a model (the decoder of a
// Hugging Face directory given as model.source = hf:DIR, or a cord weights file).
//   --prompt TEXT       a user turn (repeatable), rendered with the model's chat template
//                       (hf/chat_template.hpp; --system sets the system turn, --raw skips
//                       the template) and encoded by its tokenizer.json
//   --prompts FILE      JSON lines, each {"prompt": TEXT} or {"messages": [{role, content}..]}
//   --ids "1 2 3"       a prompt as token ids (repeatable)
//   --audio FILE        a spoken prompt (repeatable; WAV or any format libsndfile reads,
//                       resampled to 16 kHz): a user turn holding the clip, laid out as
//                       training lays out audio prompts (model/batch.hpp), with the model's
//                       features (Whisper's log-mel for model.audio.architecture = whisper,
//                       cord's otherwise). Audio prompts are generated after the others.
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
#include "cord/data/audio.hpp"
#include "cord/eval/vocabulary.hpp"
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
      ("audio", po::value<std::vector<std::string>>()->value_name("FILE"),
       "a spoken prompt: an audio file, as the user turn (repeatable)")
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

// One clip's encoder input: mel [F, n_mels] float32 and its valid frames.
struct AudioPrompt {
  std::string path;
  at::Tensor mel;
  int64_t valid_frames = 0;
};

struct Setup {
  model::Lalm model{nullptr};
  std::vector<std::vector<int64_t>> prompts;
  std::vector<AudioPrompt> audio;
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

// The features the model's encoder reads: Whisper's log-mel, trimmed to the frames that
// determine its valid outputs (whisper_encoder.hpp), or cord's log-mel.
AudioPrompt read_audio_prompt(const std::string& path, const ModelConfig& model) {
  int rate = 0;
  std::vector<float> samples = data::read_audio_file(path, &rate);
  if (rate != data::kSampleRate) samples = data::resample(samples, rate);
  AudioPrompt prompt{path, {}, 0};
  if (model.audio.architecture == AudioArchitecture::kWhisper) {
    const int64_t window = 2LL * model.audio.max_source_positions;
    if (static_cast<int64_t>(samples.size()) > window * data::kHopLength) {
      throw UsageError("cord generate --audio " + path + ": " + std::to_string(samples.size() / data::kSampleRate) +
                       " s is longer than the encoder's window of " + std::to_string(window * data::kHopLength / data::kSampleRate) +
                       " s (model.audio.max_source_positions " + std::to_string(model.audio.max_source_positions) + ")");
    }
    data::WhisperInput input = data::whisper_encoder_input(samples, model.audio.n_mels, window * data::kHopLength);
    prompt.mel = torch::from_blob(input.values.data(), {input.frames, model.audio.n_mels}, torch::kFloat).clone();
    prompt.valid_frames = input.valid_frames;
  } else {
    if (model.audio.n_mels != data::kMelBins) {
      throw UsageError("cord generate --audio: model.audio.n_mels = " + std::to_string(model.audio.n_mels) +
                       ", but cord's features have " + std::to_string(data::kMelBins) + " mel bins");
    }
    data::LogMel features = data::log_mel(samples);
    at::Tensor half = torch::from_blob(features.values.data(), {features.frames, data::kMelBins}, torch::kShort);
    prompt.mel = half.view(torch::kHalf).to(torch::kFloat);
    prompt.valid_frames = features.frames;
  }
  return prompt;
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
  for (const std::string& path : options.count("audio") ? options["audio"].as<std::vector<std::string>>()
                                                        : std::vector<std::string>{}) {
    s.audio.push_back(read_audio_prompt(path, config.model));
  }
  if (s.prompts.empty() && s.audio.empty()) {
    throw UsageError("cord generate: give at least one prompt (--prompt, --prompts, --ids or --audio)");
  }
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
  if (!s.audio.empty()) {
    const int64_t eos = s.tokens.eos;
    s.tokens = eval::ModelVocabulary::tokens_of(config.model);  // the audio prompt's runs
    s.tokens.eos = eos;
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

// The audio prompts as one batch laid out as training does (batch.hpp), without responses.
// Shorter clips' mel is zero past their own frames, which their valid outputs do not read.
model::DecoderBatch audio_batch(model::Lalm& model, const std::vector<AudioPrompt>& audio,
                                const model::SpecialTokens& tokens, const at::Device& device, model::Padding padding) {
  int64_t frames = 0;
  for (const AudioPrompt& a : audio) frames = std::max<int64_t>(frames, a.mel.size(0));
  const int64_t batch = static_cast<int64_t>(audio.size());
  at::Tensor mel = torch::zeros({batch, frames, audio.front().mel.size(1)});
  at::Tensor lengths = torch::zeros({batch}, torch::kLong);
  for (int64_t b = 0; b < batch; ++b) {
    const AudioPrompt& a = audio[static_cast<size_t>(b)];
    mel[b].narrow(0, 0, a.mel.size(0)).copy_(a.mel);
    lengths[b] = a.valid_frames;
  }
  return model::assemble_audio(model, mel.to(device), lengths.to(device), model::TokenRows(audio.size()), tokens,
                               padding);
}

// One unpadded causal forward per prompt, text prompts first: [T, V] float32 logits each.
std::vector<std::pair<std::string, at::Tensor>> prompt_logits(const Setup& s, const at::Device& device) {
  model::Lalm model = s.model;
  std::vector<std::pair<std::string, at::Tensor>> logits;
  auto add = [&](const at::Tensor& embeds) {
    const int64_t steps = embeds.size(1);
    const at::Tensor positions = torch::arange(steps, torch::TensorOptions().dtype(torch::kLong).device(device));
    const at::Tensor shard = model->decoder->forward(embeds, positions.unsqueeze(0), {true, std::nullopt});
    const at::Tensor full = model::gather_vocab(shard, model->tp_group(), model->config().vocab_size);
    logits.emplace_back("logits." + std::to_string(logits.size()), full.squeeze(0).to(torch::kFloat).cpu());
  };
  for (const auto& prompt : s.prompts) add(model->decoder->embed(torch::tensor(prompt, torch::kLong).unsqueeze(0).to(device)));
  for (const AudioPrompt& a : s.audio) add(audio_batch(model, {a}, s.tokens, device, model::Padding::kRight).embeds);
  return logits;
}

// One JSON line per prompt, text prompts first: {"prompt_ids" | "audio", "ids", "text"}.
void write_generations(const std::string& path, const Setup& s, const model::Generation& text,
                       const model::Generation& audio) {
  std::ostringstream lines;
  auto write = [&](json line, const std::vector<int64_t>& ids) {
    line["ids"] = ids;
    if (s.tokenizer) line["text"] = s.tokenizer->decode(std::vector<int32_t>(ids.begin(), ids.end()), true);
    lines << line.dump() << "\n";
  };
  for (size_t i = 0; i < s.prompts.size(); ++i) write(json{{"prompt_ids", s.prompts[i]}}, text.tokens[i]);
  for (size_t i = 0; i < s.audio.size(); ++i) write(json{{"audio", s.audio[i].path}}, audio.tokens[i]);
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
  if (options.count("logits-out") != 0) logits = prompt_logits(s, device);
  const auto start = std::chrono::steady_clock::now();
  model::Generation text, audio;
  if (!s.prompts.empty()) {
    text = model::generate(s.model, prompt_batch(s.model, s.prompts, device), s.tokens, sampling, generator);
  }
  if (!s.audio.empty()) {
    audio = model::generate(s.model, audio_batch(s.model, s.audio, s.tokens, device, model::Padding::kLeft), s.tokens,
                            sampling, generator);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t generated = 0;
  for (const model::Generation* g : {&text, &audio}) {
    for (const auto& row : g->tokens) generated += static_cast<int64_t>(row.size());
  }
  CORD_LOG(kInfo) << "generate: " << s.prompts.size() + s.audio.size() << " prompts, " << generated << " tokens from " << s.described
                  << " in " << seconds << " s (" << static_cast<int64_t>(generated / std::max(seconds, 1e-9))
                  << " tok/s, " << model::precision_name(precision) << ")";
  if (session.world.rank() == 0) {
    write_generations(options.count("out") != 0 ? options["out"].as<std::string>() : "", s, text, audio);
    if (!logits.empty()) hf::write_safetensors(options["logits-out"].as<std::string>(), logits);
  }
  return 0;
}

}  // namespace

Command generate_command() {
  return {"generate", "continue prompts with a model (model.source = hf:DIR, or --weights)", add_options, run};
}

}  // namespace cord::app
