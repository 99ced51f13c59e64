// `cord corpus ACTION`: the synthetic spoken-reasoning corpus.
//   synth    the ranks generate blocks of items round-robin (problem -> espeak-ng -> 16 kHz
//            -> log-mel) and append them to one HDF5 file collectively, round by round
//   import   the same file format from a manifest of the user's own recordings
//   inspect  counts per family and split, durations, vocabulary, schema, feature config
//   verify   every item of every dataset against its checksum (schema 2)
// Checks that can fail on bad input (arguments, manifest, text, audio) are agreed across
// ranks, so a bad item stops every rank with one message and no output file.
#include <ATen/Parallel.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "cord/app/commands.hpp"
#include "cord/app/runtime.hpp"
#include "cord/comm/mpi_check.hpp"
#include "cord/config/load.hpp"
#include "cord/core/log.hpp"
#include "cord/data/audio.hpp"
#include "cord/data/corpus.hpp"
#include "cord/data/items.hpp"
#include "cord/data/speech.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace cord::app {
namespace {

using Clock = std::chrono::steady_clock;

void add_options(po::options_description& options) {
  options.add_options()
      ("action", po::value<std::string>()->value_name("ACTION"),
       "synth | import | inspect | verify (positional, first after 'corpus'); synth makes the corpus that the [corpus] "
       "config section describes (--config, --set corpus.KEY=VALUE)")
      ("path", po::value<std::string>()->value_name("PATH"), "inspect, verify: the corpus file (positional, after ACTION)")
      ("out", po::value<std::string>()->value_name("PATH"), "synth, import: the corpus file to write (required)")
      ("manifest", po::value<std::string>()->value_name("FILE"),
       "import: TSV (header row) or .jsonl manifest with wav, question, answer, family, split[, solution]")
      ("json", po::bool_switch(), "inspect: print one JSON object instead of a table");
}

void add_positional(po::positional_options_description& positional) { positional.add("action", 1).add("path", 1); }

std::string option(const po::variables_map& options, const char* name) {
  return options.count(name) != 0 ? options[name].as<std::string>() : "";
}

// The output must be creatable: its folder exists and is writable (checked on every rank).
void check_output_path(const std::string& out, const char* action) {
  if (out.empty()) throw UsageError(std::string("cord corpus ") + action + ": --out PATH is required");
  const std::size_t slash = out.rfind('/');
  const std::string folder = slash == std::string::npos ? "." : slash == 0 ? "/" : out.substr(0, slash);
  if (access(folder.c_str(), W_OK) != 0) {
    throw UsageError(std::string("cord corpus ") + action + ": cannot write to folder " + folder + " of --out " + out);
  }
}

// Items go in blocks of kBlockItems, block b to rank b mod world size; each round every
// rank makes one block (through `make`, agreed: a failure anywhere stops all ranks before
// anything more is written) and all append them in rank order. So the file is in item
// order whatever the number of ranks, and memory holds one block per rank.
constexpr std::int64_t kBlockItems = 32;

template <typename MakeRecord>
void write_in_rounds(const comm::World& world, std::int64_t items, data::CorpusWriter& writer, const char* what,
                     MakeRecord&& make) {
  const std::int64_t blocks = (items + kBlockItems - 1) / kBlockItems;
  const std::int64_t rounds = (blocks + world.size() - 1) / world.size();
  for (std::int64_t round = 0; round < rounds; ++round) {
    const std::int64_t block = round * world.size() + world.rank();
    const std::int64_t begin = std::min(block * kBlockItems, items);
    const std::int64_t end = std::min(begin + kBlockItems, items);
    const std::vector<data::CorpusRecord> records = run_agreed(world, [&] {
      std::vector<data::CorpusRecord> mine;
      for (std::int64_t i = begin; i < end; ++i) mine.push_back(make(i));
      return mine;
    });
    writer.append(records);
    if ((round + 1) % 50 == 0) {
      CORD_LOG(kInfo) << what << ": " << std::min(items, (round + 1) * world.size() * kBlockItems) << " items";
    }
  }
}

int synth(const Session& session, const po::variables_map& options) {
  const comm::World& world = session.world;
  const CorpusConfig& config = session.config.corpus;
  struct Setup {
    std::shared_ptr<data::ProblemGenerator> generator;
    std::shared_ptr<data::Tokenizer> tokenizer;
    std::shared_ptr<data::SpeechSynthesizer> synthesizer;
    std::vector<std::string> speakers;
  };
  const std::string out = option(options, "out");
  const Setup setup = run_agreed(world, [&] {
    check_output_path(out, "synth");
    Setup s;
    s.generator = std::make_shared<data::ProblemGenerator>(config);
    s.tokenizer = std::make_shared<data::Tokenizer>(data::Tokenizer::from_generators());
    s.speakers = data::speaker_names(config);
    s.synthesizer = std::make_shared<data::SpeechSynthesizer>();
    return s;
  });
  // One torch thread per rank while featurising: the ranks are the parallelism, and a fixed
  // thread count keeps features bitwise identical whatever the number of ranks.
  at::set_num_threads(1);

  CORD_LOG(kInfo) << "corpus synth: " << config.items << " items on " << world.size() << " ranks, blocks of "
                  << kBlockItems << " -> " << out;
  const auto started = Clock::now();
  data::StageSeconds seconds;
  data::CorpusHeader header;
  header.source = "synth";
  header.seed = config.seed;
  header.config_toml = to_toml(session.config);
  header.speakers = setup.speakers;
  header.feature_kind = name_of(config.features);
  header.n_mels = config.n_mels;
  data::CorpusWriter writer(out, header, *setup.tokenizer, world.comm());
  write_in_rounds(world, config.items, writer, "corpus synth", [&](std::int64_t i) {
    return data::synthesize_item(config, *setup.generator, *setup.tokenizer, *setup.synthesizer, i, &seconds);
  });
  writer.commit();
  const double total_s = std::chrono::duration<double>(Clock::now() - started).count();

  double audio_s = seconds.audio_seconds, all_audio_s = 0;
  CORD_MPI_CHECK(MPI_Reduce(&audio_s, &all_audio_s, 1, MPI_DOUBLE, MPI_SUM, 0, world.comm()));
  CORD_LOG(kInfo) << std::fixed << std::setprecision(2) << "corpus synth: wrote " << out << ": " << config.items
                  << " items, " << all_audio_s / 3600.0 << " h of audio in " << total_s << " s ("
                  << static_cast<double>(config.items) / total_s << " items/s; rank 0 stages: generate "
                  << seconds.generate << " s, speak " << seconds.speak << " s, resample " << seconds.resample
                  << " s, log-mel " << seconds.features << " s)";
  return 0;
}

int import_manifest(const Session& session, const po::variables_map& options) {
  const comm::World& world = session.world;
  const std::string out = option(options, "out");
  const std::string manifest = option(options, "manifest");
  struct Setup {
    std::vector<data::ManifestRow> rows;
    std::shared_ptr<data::Tokenizer> tokenizer;
  };
  const Setup setup = run_agreed(world, [&] {
    if (manifest.empty()) throw UsageError("cord corpus import: --manifest FILE is required");
    check_output_path(out, "import");
    Setup s;
    s.rows = data::read_manifest(manifest);
    s.tokenizer = std::make_shared<data::Tokenizer>(data::Tokenizer::from_generators());
    return s;
  });
  at::set_num_threads(1);
  data::CorpusHeader header;
  header.source = "import";
  header.feature_kind = name_of(session.config.corpus.features);
  header.n_mels = session.config.corpus.n_mels;
  data::CorpusWriter writer(out, header, *setup.tokenizer, world.comm());
  const auto items = static_cast<std::int64_t>(setup.rows.size());
  write_in_rounds(world, items, writer, "corpus import", [&](std::int64_t i) {
    return data::import_item(setup.rows[static_cast<std::size_t>(i)], manifest, *setup.tokenizer, i,
                             session.config.corpus);
  });
  writer.commit();
  CORD_LOG(kInfo) << "corpus import: wrote " << out << ": " << setup.rows.size() << " items from " << manifest;
  return 0;
}

json describe(const data::CorpusReader& corpus) {
  std::map<std::string, std::map<std::string, std::int64_t>> counts;
  std::map<std::string, std::int64_t> families, splits;
  double total = 0, shortest = 0, longest = 0;
  std::int64_t frames = 0;
  for (std::int64_t i = 0; i < corpus.size(); ++i) {
    const std::string family = data::family_name(corpus.family(i));
    const std::string split = data::split_name(corpus.split(i));
    ++counts[family][split];
    ++families[family];
    ++splits[split];
    const double d = corpus.duration_s(i);
    total += d;
    shortest = i == 0 ? d : std::min(shortest, d);
    longest = i == 0 ? d : std::max(longest, d);
    frames += corpus.frames(i);
  }
  json feature_config = json::object();
  for (const auto& [key, value] : corpus.feature_config()) feature_config[key] = value;
  feature_config["dtype"] = "float16";
  feature_config["kind"] = corpus.feature_kind();
  feature_config["mel_scale"] = "slaney";
  return {
      {"path", corpus.path()},
      {"schema_version", corpus.schema_version()},
      {"source", corpus.source()},
      {"seed", corpus.seed()},
      {"items", corpus.size()},
      {"vocab_size", corpus.tokenizer().size()},
      {"speakers", corpus.speakers().size()},
      {"families", families},
      {"splits", splits},
      {"counts", counts},
      {"frames", frames},
      {"duration_s",
       {{"total", total}, {"mean", corpus.size() > 0 ? total / static_cast<double>(corpus.size()) : 0.0},
        {"min", shortest}, {"max", longest}}},
      {"feature_config", feature_config},
  };
}

void print_table(const json& r) {
  std::cout << "corpus " << r["path"].get<std::string>() << ": schema " << r["schema_version"] << ", source "
            << r["source"].get<std::string>() << ", seed " << r["seed"] << ", " << r["items"] << " items, vocabulary "
            << r["vocab_size"] << " tokens, " << r["speakers"] << " speakers\n";
  const json& f = r["feature_config"];
  std::cout << "features: " << f["kind"].get<std::string>() << ", " << f["n_mels"] << " log-mel bins ("
            << f["mel_scale"].get<std::string>() << "), "
            << f["sample_rate"] << " Hz, n_fft " << f["n_fft"] << ", hop " << f["hop_length"] << ", "
            << f["dtype"].get<std::string>() << "; " << r["frames"] << " frames\n";
  const json& d = r["duration_s"];
  std::cout << std::fixed << std::setprecision(2) << "duration: total " << d["total"].get<double>() / 3600.0
            << " h, mean " << d["mean"].get<double>() << " s, min " << d["min"].get<double>() << " s, max "
            << d["max"].get<double>() << " s\n\n";
  std::cout << std::left << std::setw(18) << "family" << std::right << std::setw(8) << "train" << std::setw(12)
            << "validation" << std::setw(8) << "test" << std::setw(8) << "total" << "\n";
  for (int fam = 0; fam < data::kFamilyCount; ++fam) {
    const std::string name = data::family_name(static_cast<data::Family>(fam));
    const json row = r["counts"].value(name, json::object());
    std::cout << std::left << std::setw(18) << name << std::right;
    for (const char* split : {"train", "validation", "test"}) {
      std::cout << std::setw(std::string(split) == "validation" ? 12 : 8) << row.value(split, 0);
    }
    std::cout << std::setw(8) << r["families"].value(name, 0) << "\n";
  }
}

int inspect(const Session& session, const po::variables_map& options) {
  const std::string path = option(options, "path");
  const json report = run_agreed(session.world, [&] {
    if (path.empty()) throw UsageError("cord corpus inspect: the corpus PATH is required (cord corpus inspect PATH)");
    const data::CorpusReader corpus(path);
    corpus.check_features_finite();
    return describe(corpus);
  });
  if (session.world.rank() != 0) return 0;
  if (options["json"].as<bool>()) {
    std::cout << report.dump(2) << std::endl;
  } else {
    print_table(report);
  }
  return 0;
}

// Rank 0 reads the whole file; exit 0 when every checksum matches, 1 when any does not (each
// damaged dataset and item on stdout) or the file has none (schema 1).
int verify(const Session& session, const po::variables_map& options) {
  const std::string path = option(options, "path");
  const bool rank0 = session.world.rank() == 0;
  std::optional<data::CorpusReader> corpus;
  run_agreed(session.world, [&] {
    if (path.empty()) throw UsageError("cord corpus verify: the corpus PATH is required (cord corpus verify PATH)");
    if (rank0) corpus.emplace(path, data::CorpusReader::Open::kForVerify);  // checks the schema
    return 0;
  });
  int code = 0;
  if (rank0) {
    const auto start = Clock::now();
    const std::vector<data::CorpusReader::Damage> damaged = corpus->verify();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (!corpus->has_checksums()) {
      std::cout << path << ": schema version " << corpus->schema_version()
                << " holds no checksums: nothing to verify against (write it again with cord corpus synth|import)\n";
      code = 1;
    } else if (damaged.empty()) {
      std::cout << path << ": " << corpus->size() << " items, every checksum matches (" << std::fixed
                << std::setprecision(2) << seconds << " s)\n";
    } else {
      for (const auto& d : damaged) {
        std::cout << path << ": dataset " << d.dataset << (d.item < 0 ? "" : " item " + std::to_string(d.item))
                  << ": damaged\n";
      }
      std::cout << path << ": " << damaged.size() << " damaged (dataset, item) pairs of " << corpus->size() << " items\n";
      code = 1;
    }
    std::cout.flush();
  }
  CORD_MPI_CHECK(MPI_Bcast(&code, 1, MPI_INT, 0, session.world.comm()));
  return code;
}

int run(const Session& session, const po::variables_map& options) {
  const std::string action = option(options, "action");
  run_agreed(session.world, [&] {
    if (action != "synth" && action != "import" && action != "inspect" && action != "verify") {
      throw UsageError(action.empty() ? "cord corpus: give an ACTION: synth, import, inspect or verify"
                                      : "cord corpus: unknown action '" + action + "' (synth, import, inspect or verify)");
    }
    if (action != "inspect" && action != "verify" && options.count("path") != 0) {
      throw UsageError("cord corpus " + action + ": unexpected argument '" + option(options, "path") + "'");
    }
    return 0;
  });
  if (action == "synth") return synth(session, options);
  if (action == "import") return import_manifest(session, options);
  if (action == "verify") return verify(session, options);
  return inspect(session, options);
}

}  // namespace

Command corpus_command() {
  Command c{"corpus", "synthesise, import, inspect or verify a spoken-reasoning corpus (synth | import | inspect | verify)",
            &add_options, &run};
  c.add_positional = &add_positional;
  c.positional_usage = "synth|import|inspect|verify [PATH]";
  return c;
}

}  // namespace cord::app
