#pragma once
// CorpusLoader: batches of one split of a corpus, sharded by *data-parallel* rank (the
// tensor-parallel ranks of one dp group pass the same dp_rank and get the same batch).
//
// Order: every epoch, a permutation of the split's items drawn from (seed, epoch) alone
// — the same global order whatever dp is. Global batch g is positions
// [g * global_batch, (g + 1) * global_batch) of that order; dp rank r takes the r-th
// contiguous slice of global_batch / dp items. The incomplete last global batch of an
// epoch is dropped, so every dp rank makes the same number of steps.
// Optional training-time augmentation (options.augment) changes each item's features as
// it is loaded, seeded by (seed, epoch, row): still dp-independent and resumable.
// Optional length bucketing: within each window of `bucket_window` global batches the
// positions are sorted by frame count before being cut into batches, and the batches of
// the window are then visited in a (seed, epoch, window)-random order; still
// dp-independent.
//
// State {epoch, next_batch} fully determines what comes next (the permutations are
// recomputed from the seed), so export_state() / restore() resume exactly.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cord/comm/parallel_dims.hpp"
#include "cord/data/augment.hpp"
#include "cord/data/corpus.hpp"

namespace cord::data {

struct LoaderOptions {
  Split split = Split::kTrain;
  std::int64_t global_batch = 8;  // items per step over all dp ranks; divisible by dp_size
  int dp_rank = 0;
  int dp_size = 1;
  std::uint64_t seed = 1;         // shuffle seed
  bool shuffle = true;            // false: corpus order
  int bucket_window = 0;          // global batches per length-bucketing window; 0 = no bucketing
  std::vector<Family> families;   // only items of these families; empty = every family
  // Training-time augmentation of each item's features (data/augment.hpp), drawn from
  // (seed, epoch, corpus row); off by default. Only for cord's features.
  AugmentOptions augment;
};

struct LoaderState {
  std::int64_t epoch = 0;
  std::int64_t next_batch = 0;  // global batch index within the epoch
  std::uint64_t seed = 0;       // checked on restore
};

// One dp rank's share of a global batch. Padding is 0 (features) and <pad> (tokens).
struct Batch {
  std::vector<std::int64_t> items;  // corpus rows, [B]
  at::Tensor features;              // [B, T_max, n_mels] float32
  at::Tensor feature_lengths;       // [B] int64 valid frames (CorpusReader::valid_frames)
  at::Tensor feature_mask;          // [B, T_max] bool, true on stored (non-padding) frames
  at::Tensor question;              // [B, Lq_max] int64 token ids
  at::Tensor question_mask;         // [B, Lq_max] bool
  at::Tensor solution;              // [B, Ls_max] int64
  at::Tensor solution_mask;         // [B, Ls_max] bool
  at::Tensor family;                // [B] int64 (Family)
  std::vector<std::string> answers; // decoded answer text, [B]
};

// A change of one item's features before batching: (corpus row, [frames, n_mels] float32)
// -> [frames', n_mels] float32, every frame valid (the loader's augmentation).
using FeatureTransform = std::function<at::Tensor(std::int64_t row, const at::Tensor& features)>;

// The items at corpus `rows`, in that order, as one padded batch; `transform` (when set)
// is applied to each item's features first.
Batch load_batch(const CorpusReader& corpus, const std::vector<std::int64_t>& rows,
                 const FeatureTransform& transform = {});

// `options` with dp_rank and dp_size set from the rank layout: the data-parallel
// coordinate of `world_rank`, never the world rank itself, so that the tensor-parallel
// ranks of one dp group load the same batch.
LoaderOptions shard_options(LoaderOptions options, const comm::ParallelDims& dims, int world_rank);

class CorpusLoader {
 public:
  // Throws UsageError when global_batch is not divisible by dp_size, the split has fewer
  // items than one global batch, or augmentation is asked of Whisper features.
  CorpusLoader(const CorpusReader& corpus, const LoaderOptions& options);

  std::int64_t batches_per_epoch() const;
  // The next batch; moves to the next epoch after the last full global batch.
  Batch next();
  // Corpus rows of this rank's share of global batch `batch` of `epoch` (no I/O).
  std::vector<std::int64_t> rows_of(std::int64_t epoch, std::int64_t batch) const;

  LoaderState export_state() const { return state_; }
  // Throws Error when the state's seed differs from this loader's.
  void restore(const LoaderState& state);

 private:
  // Corpus rows of `epoch` in visiting order (batch-major); cached for the current epoch.
  const std::vector<std::int64_t>& epoch_order(std::int64_t epoch) const;
  const CorpusReader& corpus_;
  LoaderOptions options_;
  std::vector<std::int64_t> split_rows_;  // rows of the split, ascending
  LoaderState state_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::int64_t> cached_order_;
};

}  // namespace cord::data
