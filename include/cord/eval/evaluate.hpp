#pragma once
// Evaluation of one corpus split: greedy, batched, KV-cached decoding of every item with
// text input and with audio input (and, optionally, of transcripts of the audio), scored
// per family. The items are dealt round-robin to the data-parallel ranks (the tp ranks of
// one dp group decode the same items together); each rank sorts its items by audio length
// so that batches pad little; the counts are summed over dp at the end.
#include <string>
#include <vector>

#include "cord/comm/process_group.hpp"
#include "cord/data/corpus.hpp"
#include "cord/eval/scoring.hpp"
#include "cord/model/lalm.hpp"
#include "cord/model/precision.hpp"

namespace cord::eval {

struct EvalOptions {
  data::Split split = data::Split::kTest;
  int64_t max_items = 0;       // the first N items of the split in corpus order; 0 = all
  int64_t batch = 64;          // prompts per generate() call on each dp rank
  int64_t max_new_tokens = 96;
  bool text = true;            // decode solutions from text questions
  bool audio = true;           // decode solutions from spoken questions
  bool transcripts = false;    // decode transcripts of the spoken questions (word error rate)
  bool predictions = false;    // collect one JSON line per item on world rank 0
  model::Precision precision = model::Precision::kFp32;  // bf16: decode under autocast
};

struct EvalOutcome {
  Scores scores;                         // summed over all ranks (the same on every rank)
  std::vector<std::string> predictions;  // world rank 0, when asked: one JSON object per item
  int64_t generated_tokens = 0;          // this rank's decoded tokens (all passes)
  double seconds = 0;
};

// This dp rank's rows of the split: every dp_size-th of its first max_items items (0 = all),
// longest audio first. Throws UsageError when the split has no items.
std::vector<int64_t> rank_rows(const data::CorpusReader& corpus, const EvalOptions& options, int dp_rank, int dp_size);

// Collective over groups.world. Throws UsageError when the split has no items.
EvalOutcome evaluate(model::Lalm& model, const data::CorpusReader& corpus, const EvalOptions& options,
                     const comm::ProcessGroups& groups);

}  // namespace cord::eval
