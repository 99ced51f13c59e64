// `cord export`: a model as a Hugging Face directory that transformers loads with
// from_pretrained: the decoder of a causal LM, every part of a Qwen2-Audio model
// (hf/hf_model.hpp says what is written).
//   --weights PATH   a cord weights file (RUN/STAGE/model.h5); without it, the weights of
//                    model.source (a round trip through cord's loader)
//   --out DIR        the directory to write (created; its files are replaced atomically)
//   --dtype NAME     source (the source's dtype, float32 for the built-in model), float32,
//                    bfloat16 or float16
// Collective: the tp ranks of dp rank 0 gather the slices, world rank 0 writes.
#include "cord/app/commands.hpp"
#include "cord/app/runtime.hpp"
#include "command_model.hpp"
#include "cord/ckpt/model_weights.hpp"
#include "cord/comm/agree.hpp"
#include "cord/core/log.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/hf/hf_model.hpp"

namespace po = boost::program_options;

namespace cord::app {
namespace {

void add_options(po::options_description& options) {
  options.add_options()
      ("weights", po::value<std::string>()->value_name("PATH"),
       "cord weights file (RUN/STAGE/model.h5) or training checkpoint (step-N.h5) to export (default: model.source's "
       "own weights)")
      ("out", po::value<std::string>()->value_name("DIR"), "the Hugging Face directory to write (required)")
      ("dtype", po::value<std::string>()->default_value("source")->value_name("NAME"),
       "source | float32 | bfloat16 | float16");
}

struct Setup {
  model::Lalm model{nullptr};
  hf::ExportRequest request;
  std::string described;
};

Setup set_up(const Session& session, const po::variables_map& options) {
  const Config& config = session.config;
  Setup s;
  if (options.count("out") == 0) throw UsageError("cord export: --out DIR is required");
  s.request.out_directory = options["out"].as<std::string>();
  s.request.dtype = hf::parse_export_dtype(options["dtype"].as<std::string>(), "--dtype");
  s.request.source_directory = hf::hf_directory(config.model.source);
  s.request.model = config.model;
  CommandModel loaded = load_command_model(
      "export", config.model, session.groups, options.count("weights") ? options["weights"].as<std::string>() : "");
  s.model = loaded.model;
  s.described = loaded.weights;
  return s;
}

int run(const Session& session, const po::variables_map& options) {
  Setup s = run_agreed(session.world, [&] { return set_up(session, options); });
  std::vector<std::pair<std::string, at::Tensor>> params;
  if (session.groups.dp.rank() == 0) {
    for (const model::ParamShard& shard : model::sharded_parameters(*s.model, session.groups.tp)) {
      if (hf::hf_tensor_name(shard.name, hf::hf_layout(s.request.model)).empty()) continue;
      at::Tensor global = ckpt::gather_global(shard, session.groups.tp);
      if (session.world.rank() == 0) params.emplace_back(shard.name, std::move(global));
    }
  }
  std::string failure;
  if (session.world.rank() == 0) {
    try {
      hf::export_hf_directory(s.request, params);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  const comm::Agreement agreement = comm::agree(session.world.comm(), failure);
  if (!agreement.ok()) throw Error("cord export to " + s.request.out_directory + " failed: " + agreement.message);
  CORD_LOG(kInfo) << "export: " << s.described << " -> " << s.request.out_directory << " (" << params.size()
                  << " tensors)";
  return 0;
}

}  // namespace

Command export_command() {
  return {"export", "write a model as a Hugging Face directory (safetensors, config, tokenizer): a causal LM's decoder, or a Qwen2-Audio model whole",
          add_options, run};
}

}  // namespace cord::app
