// cord: one SPMD binary. Every rank runs this same story:
//   parse the command line -> load and validate the config -> resolve the rank layout
//   -> bring up threads, device and process groups -> run the command -> tear down (RAII).
// Steps before the command are agreed across ranks: a mistake in them ends every rank
// with the same exit code and one message. See runtime.hpp for the error policy.
#include <iostream>

#include "cord/app/commands.hpp"
#include "cord/app/runtime.hpp"
#include "cord/comm/parallel_dims.hpp"
#include "cord/config/config.hpp"
#include "cord/config/load.hpp"
#include "cord/core/build_info.hpp"
#include "cord/core/log.hpp"

namespace {

// The --dry-run report: the resolved config, then who is where.
void print_dry_run(const cord::Config& config, const cord::comm::ParallelDims& dims) {
  std::cout << "# resolved config\n" << cord::to_toml(config) << "\n# rank layout: world " << dims.world_size()
            << " = dp " << dims.dp() << " x tp " << dims.tp() << "\n";
  for (int rank = 0; rank < dims.world_size(); ++rank) {
    const auto coords = dims.coords_of(rank);
    std::cout << "# rank " << rank << ": dp_rank " << coords.dp_rank << ", tp_rank " << coords.tp_rank
              << ", tp group " << cord::comm::format_ranks(dims.tp_group_of(rank)) << ", dp group "
              << cord::comm::format_ranks(dims.dp_group_of(rank)) << "\n";
  }
}

int cord_main(int argc, char** argv, const cord::comm::World& world) {
  using namespace cord;
  const std::vector<app::Command>& commands = app::all_commands();

  const app::Invocation invocation =
      app::run_agreed(world, [&] { return app::parse_command_line(argc, argv, commands); });
  if (invocation.kind == app::Invocation::Kind::kHelp) {
    if (world.rank() == 0) std::cout << invocation.help_text;
    return 0;
  }
  if (invocation.kind == app::Invocation::Kind::kVersion) {
    if (world.rank() == 0) std::cout << "cord " << build_info().version << " (" << build_info().commit << ")\n";
    return 0;
  }
  configure_logging(world.rank(), invocation.common.log_level, invocation.common.log_ranks);

  const Config config = app::run_agreed(
      world, [&] { return load_config(invocation.common.config_path, invocation.common.overrides); });
  const comm::ParallelDims dims = app::run_agreed(world, [&] {
    const auto resolved = comm::ParallelDims::resolve(config.parallel.dp, config.parallel.tp, world.size());
    validate_tensor_parallel(config.model, resolved.tp());
    return resolved;
  });
  if (invocation.common.dry_run) {
    if (world.rank() == 0) print_dry_run(config, dims);
    return 0;
  }

  app::Session session = app::start_session(world, config, dims);
  for (int i = 0; i < argc; ++i) session.command_line += (i == 0 ? "" : " ") + std::string(argv[i]);
  return invocation.command->run(session, invocation.options);
}

}  // namespace

int main(int argc, char** argv) {
  return cord::app::run_spmd(argc, argv,
                             [&](const cord::comm::World& world) { return cord_main(argc, argv, world); });
}
