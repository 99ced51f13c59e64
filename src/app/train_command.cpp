// `cord train`: one stage (train.stage) through the stage loop (train/stage_loop.hpp): text or
// align of the base LALM (train/text_stage.hpp), or distill, CORD and its baselines
// (train/distill_stage.hpp). Set-up errors (corpus, weights, vocabulary, architecture) are agreed
// across ranks; the step loop's errors end the job as runtime.hpp describes.
#include "cord/app/commands.hpp"
#include "cord/app/runtime.hpp"
#include "cord/train/stage_loop.hpp"

namespace po = boost::program_options;

namespace cord::app {
namespace {

void add_options(po::options_description& options) {
  options.add_options()
      ("resume", po::value<std::string>()->value_name("auto|none|PATH"),
       "continue from a checkpoint: auto = the newest committed one in the stage's checkpoint folder that verifies "
       "(a damaged one is reported and the previous used), none = from step 0, or a checkpoint file "
       "(default: ckpt.resume)")
      ("max-wall-minutes", po::value<double>()->value_name("T"),
       "save a checkpoint and exit 75 (requeue) before the job has run T minutes (default: ckpt.max_wall_minutes)");
}

// Exit code of a stage: 0 when done, 75 when it saved a checkpoint and stopped early.
int exit_code(const train::StageSummary& summary) {
  return summary.stopped ? static_cast<int>(ExitCode::kRequeue) : 0;
}

int run(const Session& session, const po::variables_map& options) {
  Config config = session.config;
  if (options.count("resume") != 0) config.ckpt.resume = options["resume"].as<std::string>();
  if (options.count("max-wall-minutes") != 0) config.ckpt.max_wall_minutes = options["max-wall-minutes"].as<double>();
  run_agreed(session.world, [&] {
    validate(config);
    return 0;
  });
  std::unique_ptr<train::StageRun> stage = run_agreed(session.world, [&] {
    return std::make_unique<train::StageRun>(config, session.groups, session.device, session.command_line);
  });
  return exit_code(stage->train());
}

}  // namespace

Command train_command() {
  return {"train",
          "train one stage into train.run_dir/STAGE/: text | align (the base model) or distill (cord.method); "
          "checkpoints and resume per [ckpt]; exit 75 = checkpoint saved after a signal or the wall-time limit",
          &add_options, &run};
}

}  // namespace cord::app
