// `cord info`: who is where and what this build can do. Every rank reports its own
// facts (host, local rank, layout coordinates, group memberships read from its actual
// communicators, device); rank 0 gathers and prints them as a table or one JSON object.
#include <hdf5.h>

#include <algorithm>
#include <boost/version.hpp>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <torch/version.h>

#include "cord/app/commands.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/comm/parallel_dims.hpp"
#include "cord/core/build_info.hpp"
#include "cord/model/model_stats.hpp"
#include "cord/app/runtime.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace cord::app {
namespace {

json this_rank(const Session& s) {
  const comm::RankCoords coords = s.groups.dims.coords_of(s.world.rank());
  return {
      {"rank", s.world.rank()},
      {"host", s.world.host()},
      {"local_rank", s.world.local_rank()},
      {"local_size", s.world.local_size()},
      {"dp_rank", coords.dp_rank},
      {"tp_rank", coords.tp_rank},
      {"dp_group", s.groups.dp.world_ranks()},
      {"tp_group", s.groups.tp.world_ranks()},
      {"device", s.device},
      {"threads", s.threads},
      {"gpu_usable", s.cuda.usable()},
      {"gpu_count", s.cuda.device_count},
      {"gpu_names", s.cuda.device_names},
      {"gpu_unavailable_reason", s.cuda.unavailable_reason},
  };
}

json versions(const Session& s) {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  std::string boost = BOOST_LIB_VERSION;
  std::replace(boost.begin(), boost.end(), '_', '.');
  const std::string nccl = comm::nccl_version();
  return {
      {"torch", TORCH_VERSION},
      {"mpi", comm::mpi_library_version()},
      {"hdf5", std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release)},
      {"hdf5_parallel", H5_HAVE_PARALLEL == 1},
      {"boost", boost},
      {"cuda_runtime", format_cuda_version(s.cuda.runtime_version)},
      {"cuda_driver", format_cuda_version(s.cuda.driver_version)},
      {"nccl", nccl.empty() ? "n/a" : nccl},
  };
}

// Sizes and FLOPs of the configured model (for MFU), at its longest context.
json model_report(const ModelConfig& config) {
  const int64_t context = config.max_seq_len;
  const int64_t audio_frames = config.audio.architecture == AudioArchitecture::kWhisper
                                   ? 2LL * config.audio.max_source_positions
                                   : 4LL * config.audio.projector_stack * config.max_seq_len;
  const model::ModelStats stats = model::compute_model_stats(config, context, audio_frames);
  return {
      {"total_params", stats.total_params},
      {"decoder_params", stats.decoder_params},
      {"encoder_params", stats.encoder_params},
      {"projector_params", stats.projector_params},
      {"flops_context", context},
      {"decoder_forward_flops_per_token", stats.decoder_forward_flops_per_token},
      {"decoder_train_flops_per_token", stats.decoder_train_flops_per_token},
      {"encoder_forward_flops_per_frame", stats.encoder_forward_flops_per_frame},
  };
}

json report(const Session& s, const std::vector<std::string>& rank_records) {
  const BuildInfo& build = build_info();
  json ranks = json::array();
  for (const std::string& record : rank_records) ranks.push_back(json::parse(record));
  return {
      {"world_size", s.world.size()},
      {"layout", {{"dp", s.groups.dims.dp()}, {"tp", s.groups.dims.tp()}}},
      {"mpi_thread_level", s.world.thread_level()},
      {"build",
       {{"version", build.version},
        {"commit", build.commit},
        {"build_type", build.build_type},
        {"compiler", build.compiler},
        {"cuda_compiled", build.with_cuda},
        {"nccl_compiled", build.with_cuda}}},
      {"versions", versions(s)},
      {"model", model_report(s.config.model)},
      {"ranks", ranks},
  };
}

void print_table(const json& r) {
  std::cout << "cord " << r["build"]["version"].get<std::string>() << " (" << r["build"]["commit"].get<std::string>()
            << ", " << r["build"]["build_type"].get<std::string>() << ", "
            << (r["build"]["cuda_compiled"].get<bool>() ? "CUDA+NCCL compiled in" : "CPU only") << ")\n";
  std::cout << "world " << r["world_size"] << " = dp " << r["layout"]["dp"] << " x tp " << r["layout"]["tp"] << "\n";
  const json& m = r["model"];
  std::cout << "model: " << m["total_params"] << " parameters (decoder " << m["decoder_params"] << ", encoder "
            << m["encoder_params"] << ", projector " << m["projector_params"] << "); decoder training FLOPs/token "
            << std::setprecision(4) << m["decoder_train_flops_per_token"].get<double>() / 1e6 << "M at context "
            << m["flops_context"] << "\n";
  std::cout << "versions:";
  for (const auto& [name, value] : r["versions"].items()) {
    std::cout << " " << name << "=" << (value.is_string() ? value.get<std::string>() : value.dump());
  }
  std::cout << "\n\n"
            << std::left << std::setw(6) << "rank" << std::setw(18) << "host" << std::setw(7) << "local"
            << std::setw(8) << "dp_rank" << std::setw(8) << "tp_rank" << std::setw(14) << "dp_group"
            << std::setw(14) << "tp_group" << std::setw(9) << "device" << "gpu\n";
  for (const json& rank : r["ranks"]) {
    std::cout << std::setw(6) << rank["rank"].get<int>() << std::setw(18) << rank["host"].get<std::string>()
              << std::setw(7) << rank["local_rank"].get<int>() << std::setw(8) << rank["dp_rank"].get<int>()
              << std::setw(8) << rank["tp_rank"].get<int>() << std::setw(14)
              << comm::format_ranks(rank["dp_group"].get<std::vector<int>>()) << std::setw(14)
              << comm::format_ranks(rank["tp_group"].get<std::vector<int>>()) << std::setw(9)
              << rank["device"].get<std::string>()
              << (rank["gpu_usable"].get<bool>() ? std::to_string(rank["gpu_count"].get<int>()) + " usable"
                                                 : "none (" + rank["gpu_unavailable_reason"].get<std::string>() + ")")
              << "\n";
  }
}

void add_options(po::options_description& options) {
  options.add_options()("json", po::bool_switch(), "print one JSON object instead of a table");
}

int run(const Session& session, const po::variables_map& options) {
  const std::vector<std::string> records = comm::gather_strings(session.groups.world, this_rank(session).dump(), 0);
  if (session.world.rank() != 0) return 0;
  const json r = report(session, records);
  if (options["json"].as<bool>()) {
    std::cout << r.dump(2) << std::endl;
  } else {
    print_table(r);
  }
  return 0;
}

}  // namespace

Command info_command() {
  return {"info", "print the rank layout, devices, build and library versions", &add_options, &run};
}

}  // namespace cord::app
