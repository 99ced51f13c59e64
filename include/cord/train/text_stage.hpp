#pragma once
// The two stages of the base LALM, run by StageLoop (train/stage_loop.hpp):
//   text   the decoder learns from the text question -> solution (loss on response tokens),
//          and on train.text_repeat_fraction of the items question -> the question back;
//          the audio encoder and projector are frozen (unused)
//   align  the decoder is frozen; the encoder and projector learn audio -> transcript, and
//          on train.align_solution_fraction of the items audio -> solution
// An item's task is a fixed draw per (train.seed, corpus row), the same over epochs and layouts.
// The loss of a step is the mean over every response token of the global batch: each
// micro-batch's token-summed loss is scaled by dp / (the global batch's response tokens).
#include <memory>

#include "cord/train/stage_loop.hpp"

namespace cord::train {

// Loads train.init (the align stage: RUN_DIR/text/model.h5 by default) into the context's
// model, checks its vocabulary against the corpus, and freezes what the stage does not train.
std::unique_ptr<Stage> make_text_stage(StageContext& context);

}  // namespace cord::train
