// `cord train`: one stage of the base LALM (train.stage = text | align), see
// train/trainer.hpp. Set-up errors (corpus, weights, vocabulary, architecture) are agreed
// across ranks; the step loop's errors end the job as runtime.hpp describes.
#include "cord/app/commands.hpp"
#include "cord/app/runtime.hpp"
#include "cord/train/trainer.hpp"

namespace po = boost::program_options;

namespace cord::app {
namespace {

void add_options(po::options_description&) {}

int run(const Session& session, const po::variables_map&) {
  std::unique_ptr<train::Trainer> trainer = run_agreed(session.world, [&] {
    return std::make_unique<train::Trainer>(session.config, session.groups, session.device, session.command_line);
  });
  trainer->run();
  return 0;
}

}  // namespace

Command train_command() {
  return {"train",
          "train one stage of the base model (train.stage = text | align) into train.run_dir/STAGE/",
          &add_options, &run};
}

}  // namespace cord::app
