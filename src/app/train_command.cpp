// `cord train`: one stage (train.stage): text or align of the base LALM (train/trainer.hpp),
// or distill, CORD and its baselines (train/distiller.hpp). Set-up errors (corpus, weights, vocabulary, architecture) are agreed
// across ranks; the step loop's errors end the job as runtime.hpp describes.
#include "cord/app/commands.hpp"
#include "cord/app/runtime.hpp"
#include "cord/train/distiller.hpp"
#include "cord/train/trainer.hpp"

namespace po = boost::program_options;

namespace cord::app {
namespace {

void add_options(po::options_description&) {}

int run(const Session& session, const po::variables_map&) {
  if (session.config.train.stage == "distill") {
    std::unique_ptr<train::Distiller> distiller = run_agreed(session.world, [&] {
      return std::make_unique<train::Distiller>(session.config, session.groups, session.device, session.command_line);
    });
    distiller->run();
    return 0;
  }
  std::unique_ptr<train::Trainer> trainer = run_agreed(session.world, [&] {
    return std::make_unique<train::Trainer>(session.config, session.groups, session.device, session.command_line);
  });
  trainer->run();
  return 0;
}

}  // namespace

Command train_command() {
  return {"train",
          "train one stage into train.run_dir/STAGE/: text | align (the base model) or distill (cord.method)",
          &add_options, &run};
}

}  // namespace cord::app
