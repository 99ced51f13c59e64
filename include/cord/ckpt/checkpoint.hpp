#pragma once
// Training checkpoints: everything a stage needs to continue exactly where it stopped,
// in a file that does not depend on the rank layout that wrote it.
//
// A checkpoint folder (RUN_DIR/STAGE/checkpoints/ by default) holds
//   step-00000120.h5   one checkpoint per saved step
//   latest             the commit marker: the file name of the newest complete checkpoint
// A checkpoint is written under a temporary name (.step-00000120.h5.partial-120), flushed,
// fsynced and renamed into place; then `latest` is replaced atomically. A checkpoint exists
// only once the marker names it or a later one: files newer than the marker (a crash between
// the rename and the marker) and files in a folder without a marker are not committed and
// are never resumed from.
//
// File layout (readable with h5py; docs/checkpoints.md):
//   /params/<name>                float32, the parameter's global shape
//   /optim/exp_avg/<name>         float32, global shape: AdamW m of every trained parameter
//   /optim/exp_avg_sq/<name>      float32, global shape: AdamW v
//   /loader                       int64 [dp, 3]: every dp rank's loader (epoch, next_batch, seed)
//   /rng/cpu                      uint8 [world, bytes]: every rank's CPU generator state
//   /rng/cuda                     uint8 [world, bytes]: every rank's CUDA generator state (GPU runs)
//   every dataset: attribute checksum (16 hex digits, see block_checksum)
//   root attributes: format = "cord-checkpoint", version, stage, step, optimizer_steps,
//     skipped, skipped_in_a_row, last_loss, train_seconds, run_id, log_window (the step
//     records' window, JSON), layout_world/dp/tp,
//     zero1, device, host, created (UTC), commit, config (resolved TOML), vocab,
//     sampler (how rollouts are seeded), and the architecture fields (model.*).
// Tensors are written collectively with parallel HDF5: each tensor-parallel shard goes into
// its hyperslab of the global dataset (described by key, global shape and offset, as
// Megatron's sharded tensors are); exactly one rank writes each element.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <future>
#include <string>
#include <vector>

#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"

namespace cord::ckpt {

// One tensor of a checkpoint as this rank holds it.
struct ShardedTensor {
  std::string key;                    // dataset path in the file, e.g. "params/decoder.norm.weight"
  at::Tensor local;                   // this rank's shard (float32, any device); undefined where it holds none
  std::vector<int64_t> global_shape;  // {} for a scalar (stored as {1})
  int split_dim = -1;                 // -1: `local` is the whole tensor
  int64_t offset = 0;                 // start of `local` along split_dim
  bool writes = false;                // this rank writes its block (one copy of every element is written)
};

// The scalars a checkpoint restores besides tensors.
struct Progress {
  std::string stage;                // text | align | distill
  int64_t step = 0;                 // steps completed (the next step is step + 1, 1-based)
  int64_t optimizer_steps = 0;      // AdamW updates taken (t of the bias correction)
  int64_t skipped = 0;              // non-finite steps skipped so far
  int64_t skipped_in_a_row = 0;
  double last_loss = 0;
  double train_seconds = 0;         // stage time spent before this checkpoint, over every attempt
  int64_t loader_epoch = 0;         // the loader's position (dp-independent: a global batch index)
  int64_t loader_next_batch = 0;
  int64_t loader_seed = 0;
  std::string run_id;               // the same for every checkpoint of one run and its resumptions
  std::string log_window;           // the metrics window since the last step record (JSON,
                                    // train/step_stats.hpp); "" in checkpoints from before it
};

// What save_checkpoint() writes besides tensors.
struct SaveRequest {
  std::string directory;            // the checkpoint folder (created when missing)
  Progress progress;
  std::string config_toml;          // the resolved config
  std::vector<std::string> vocab;
  ModelConfig model;
  std::string device;               // "cpu" or "cuda:N": a CUDA run also saves the CUDA generators
  std::string sampler;              // how the stage's sampling is seeded (recorded, for readers)
  bool zero1 = false;
};

// Deletes files on a helper thread, so that a save does not wait while the file system
// frees a large file. One batch at a time: start() and the destructor wait for the one in
// flight. Owned by whoever saves repeatedly (train/checkpointing.hpp's StageCheckpointer).
class BackgroundRemover {
 public:
  BackgroundRemover() = default;
  ~BackgroundRemover() { wait(); }
  BackgroundRemover(const BackgroundRemover&) = delete;
  BackgroundRemover& operator=(const BackgroundRemover&) = delete;
  // Deletes DIRECTORY/NAME for every name, after the previous batch has finished.
  void start(const std::string& directory, std::vector<std::string> names);
  // Returns once the batch in flight (if any) is deleted.
  void wait();

 private:
  std::future<void> pending_;
};

struct Retention {
  int64_t keep_last = 2;            // the newest K committed checkpoints are kept (>= 1)
  int64_t keep_every = 0;           // and every one whose step is a multiple of this; 0 = none
  // Delete through this remover after the commit (the save waits first for its previous
  // batch, so that the folder listing does not race it); nullptr: delete before returning.
  BackgroundRemover* remover = nullptr;
};

struct SavedCheckpoint {
  std::string path;
  int64_t bytes = 0;                // file size
  double seconds = 0;               // wall time of the whole save (checksums, write, fsync, commit)
  // Its phases (rank 0's clock): the collective write through close, then fsync + rename +
  // marker, then the retention deletes; the rest of `seconds` is the checks before them.
  double write_seconds = 0;
  double commit_seconds = 0;
  double cleanup_seconds = 0;
  std::vector<std::string> removed; // older checkpoints deleted by the retention policy
                                    // (with a remover: being deleted)
};

// Collective over groups.world. Writes the checkpoint of request.progress.step, commits it
// and applies `retention` (only after the commit; files listed in `superseded` — an
// abandoned earlier run's — are deleted then too). Throws Error naming the file on every
// rank when any rank fails (not enough space, unwritable folder, ...); the previous
// checkpoint and the marker are then untouched.
SavedCheckpoint save_checkpoint(const SaveRequest& request, const std::vector<ShardedTensor>& tensors,
                                const comm::ProcessGroups& groups, const Retention& retention,
                                const std::vector<std::string>& superseded = {});

// Collective over groups.world. Loads `path` into every defined `local` of `tensors` (this
// rank's block of each global tensor, whatever layout wrote it) and restores this rank's
// generators when the layout is the one that wrote it. Throws UsageError naming the file
// when it is not a checkpoint, belongs to another stage or another architecture (listing
// each field that differs), and Error when a tensor is missing or has another shape.
Progress load_checkpoint(const std::string& path, const std::vector<ShardedTensor>& tensors,
                         const comm::ProcessGroups& groups, const ModelConfig& model, const std::string& stage);

// --- reading without a model -------------------------------------------------------------

struct TensorInfo {
  std::string key;
  std::vector<int64_t> shape;
  std::string checksum;             // stored
  bool verified = false;            // recomputed from the data and equal to the stored one
};

// The root attributes of a checkpoint besides the model's (format, version, commit,
// config, vocab, model.*): what it is the progress of, and who wrote it where. One table in
// checkpoint.cpp writes and reads every field.
struct CheckpointHeader {
  Progress progress;                // the loader's position is in /loader, not here
  int64_t world = 0, dp = 0, tp = 0;  // the layout that wrote it
  int64_t zero1 = 0;                // 1: AdamW state was sharded over dp
  std::string device;               // "cpu" or "cuda:N"
  std::string host, created;        // rank 0's host and UTC time of the save
  std::string sampler;              // how the stage's sampling is seeded
};

struct CheckpointInfo {
  std::string path;
  CheckpointHeader header;
  std::string commit;
  int64_t bytes = 0;
  std::vector<TensorInfo> tensors;
  bool verified = false;            // every checksum verified
  std::string problem;              // why not, when it was checked ("" otherwise)
};

// Opens `path` alone (no MPI) and, with `verify`, recomputes every checksum. Never throws
// for a damaged file: `problem` says what is wrong (unreadable, not a checkpoint, a
// checksum mismatch naming the dataset).
CheckpointInfo inspect_checkpoint(const std::string& path, bool verify);

// "step-00000120.h5"
std::string checkpoint_file_name(int64_t step);

// What to resume from. `resume`: "none", "auto" (the newest committed checkpoint in
// `directory` whose checksums verify; a damaged one is reported and the previous used) or a
// path. Call on one rank. Throws UsageError when a named checkpoint is damaged or when
// committed checkpoints exist but none verifies.
struct ResumeChoice {
  std::string path;                       // empty: start from the beginning
  std::vector<std::string> rejected;      // "PATH: why" for every checkpoint passed over
  std::vector<std::string> uncommitted;   // checkpoint files the marker does not cover
  std::vector<std::string> existing;      // every committed checkpoint file in the folder
};
ResumeChoice choose_checkpoint(const std::string& resume, const std::string& directory);

// Layout-independent checksum of one block of a global tensor: the sum modulo 2^64, over
// the block's 32-bit words, of fmix32(word + lo32(g) * 0x9E3779B1 + hi32(g) * 0x85EBCA77)
// (mod 2^32), g the word's global index and fmix32 murmur3's finaliser (8-byte elements are
// two words, 1-byte elements one; cord/core/checksum.hpp). The blocks of a partition sum to
// the whole tensor's checksum, and any single changed word changes it.
// `block`: a contiguous CPU tensor; split_dim < 0 means the block is the whole tensor.
uint64_t block_checksum(const at::Tensor& block, const std::vector<int64_t>& global_shape, int split_dim,
                        int64_t offset);

}  // namespace cord::ckpt
