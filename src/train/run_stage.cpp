// `cord train`: the stage that train.stage names, through one StageLoop.
#include "cord/train/distill_stage.hpp"
#include "cord/train/stage_loop.hpp"
#include "cord/train/text_stage.hpp"

namespace cord::train {

StageRun::StageRun(const Config& config, const comm::ProcessGroups& groups, const std::string& device,
                   const std::string& command_line)
    : context_(open_stage_context(config, groups, device)),
      stage_(config.train.stage == StageName::kDistill ? make_distill_stage(context_) : make_text_stage(context_)),
      loop_(std::make_unique<StageLoop>(context_, *stage_, command_line)) {}

StageRun::~StageRun() = default;

}  // namespace cord::train
