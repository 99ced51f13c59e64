// `cord ckpt inspect PATH [--json]`: what a training checkpoint holds (ckpt/checkpoint.hpp):
// stage, step, the layout that wrote it, every tensor with its shape, and whether every
// checksum verifies. Exit 0 when it verifies, 1 when it does not (the problem is printed).
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cord/app/commands.hpp"
#include "cord/app/runtime.hpp"
#include "cord/ckpt/checkpoint.hpp"
#include "cord/comm/agree.hpp"
#include "cord/comm/collectives.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace cord::app {
namespace {

void add_options(po::options_description& options) {
  options.add_options()
      ("action", po::value<std::string>()->value_name("ACTION"), "inspect (positional, first after 'ckpt')")
      ("path", po::value<std::string>()->value_name("PATH"), "the checkpoint file (positional, after ACTION)")
      ("json", po::bool_switch(), "print JSON instead of a table");
}

void add_positional(po::positional_options_description& positional) { positional.add("action", 1).add("path", 1); }

json to_json(const ckpt::CheckpointInfo& info) {
  json tensors = json::array();
  for (const ckpt::TensorInfo& t : info.tensors) {
    tensors.push_back({{"key", t.key}, {"shape", t.shape}, {"checksum", t.checksum}, {"verified", t.verified}});
  }
  const ckpt::CheckpointHeader& h = info.header;
  const ckpt::Progress& p = h.progress;
  return {{"path", info.path},         {"stage", p.stage},
          {"step", p.step},            {"optimizer_steps", p.optimizer_steps},
          {"layout", {{"world", h.world}, {"dp", h.dp}, {"tp", h.tp}, {"zero1", h.zero1 != 0}}},
          {"device", h.device},        {"commit", info.commit},
          {"created", h.created},      {"host", h.host},
          {"run_id", p.run_id},        {"bytes", info.bytes},
          {"verified", info.verified}, {"problem", info.problem},
          {"tensors", tensors}};
}

void print_table(const ckpt::CheckpointInfo& info) {
  const ckpt::CheckpointHeader& h = info.header;
  const ckpt::Progress& p = h.progress;
  std::cout << "checkpoint " << info.path << " (" << info.bytes << " bytes)\n"
            << "  stage " << p.stage << ", step " << p.step << ", " << p.optimizer_steps << " optimizer steps\n"
            << "  written by world " << h.world << " = dp " << h.dp << " x tp " << h.tp
            << (h.zero1 != 0 ? " (ZeRO-1)" : "") << " on " << h.host << " (" << h.device << "), " << h.created
            << ", commit " << info.commit << ", run " << p.run_id << "\n";
  for (const ckpt::TensorInfo& t : info.tensors) {
    std::string shape;
    for (size_t i = 0; i < t.shape.size(); ++i) shape += (i == 0 ? "" : " x ") + std::to_string(t.shape[i]);
    std::cout << "  " << std::left << std::setw(48) << t.key << " " << std::setw(14) << shape << " " << t.checksum
              << (t.verified ? " ok" : " MISMATCH") << "\n";
  }
  std::cout << (info.verified ? "every checksum verifies\n" : "NOT VALID: " + info.problem + "\n");
}

int run(const Session& session, const po::variables_map& options) {
  const std::string action = options.count("action") != 0 ? options["action"].as<std::string>() : "";
  const std::string path = options.count("path") != 0 ? options["path"].as<std::string>() : "";
  run_agreed(session.world, [&] {
    if (action != "inspect") {
      throw UsageError(action.empty() ? "cord ckpt: give an ACTION: inspect" : "cord ckpt: unknown action '" + action + "' (inspect)");
    }
    if (path.empty()) throw UsageError("cord ckpt inspect: give the checkpoint PATH");
    return 0;
  });
  // Rank 0 reads the file; every rank returns its verdict.
  std::string problem;
  if (session.world.rank() == 0) {
    const ckpt::CheckpointInfo info = ckpt::inspect_checkpoint(path, true);
    if (options["json"].as<bool>()) std::cout << to_json(info).dump(2) << std::endl;
    else if (info.header.progress.stage.empty()) std::cout << "checkpoint " << path << ": NOT VALID: " << info.problem << std::endl;
    else print_table(info);
    if (!info.verified) problem = info.problem.empty() ? "not verified" : info.problem;
  }
  return comm::agree(session.groups.world, problem).ok() ? 0 : 1;
}

}  // namespace

Command ckpt_command() {
  Command c{"ckpt", "inspect a training checkpoint: stage, step, layout, tensors, checksums (inspect PATH)",
            &add_options, &run};
  c.add_positional = &add_positional;
  c.positional_usage = "inspect PATH";
  return c;
}

}  // namespace cord::app
