#pragma once
// What the checkpoint's writer (checkpoint_save.cpp) and its readers (checkpoint.cpp)
// share: the file's constants, its header table, small file-system helpers and the
// checkpoint folder's listing. Private to cord_ckpt.
#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cord/ckpt/checkpoint.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/h5/h5.hpp"

namespace cord::ckpt::detail {

inline constexpr const char* kFormat = "cord-checkpoint";
inline constexpr int64_t kVersion = 2;  // 2: 32-bit checksum terms (core/checksum.hpp)
inline constexpr const char* kMarker = "latest";

using Clock = std::chrono::steady_clock;

// Every root attribute of CheckpointHeader, through one table (checkpoint.cpp).
void write_header(h5::File& file, const CheckpointHeader& header);
CheckpointHeader read_header(const h5::File& file);

std::string hex64(uint64_t value);
std::string utc_now();                        // "2026-12-02T01:02:03Z"
int64_t file_size(const std::string& path);   // -1 when it does not exist
bool exists(const std::string& path);

// Collective over `world`: when any rank's `failure` is not empty, every rank throws Error
// "WHAT: <the lowest failing rank's message> (rank R)", so the job ends with the real cause
// whichever rank logs first.
void agree_or_throw(const std::string& failure, const comm::ProcessGroup& world, const std::string& what);

// Checkpoint files in `directory` as (step, file name), ascending by step.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& directory);
// Temporary files of interrupted saves.
std::vector<std::string> list_partials(const std::string& directory);
// The step the commit marker names, or -1 without a (readable) marker; `named` gets its text.
int64_t marker_step(const std::string& directory, std::string* named = nullptr);
// Committed files to delete after the commit of `new_step`.
std::vector<std::string> retention_victims(const std::string& directory, int64_t new_step, const Retention& retention,
                                           const std::vector<std::string>& superseded);

std::vector<uint64_t> unsigned_shape(const std::vector<int64_t>& shape);  // {} -> {1}
int64_t numel_of(const std::vector<int64_t>& shape);
// The block of `t` in the global dataset: start and count per dimension.
void block_of(const ShardedTensor& t, std::vector<uint64_t>& start, std::vector<uint64_t>& count);
at::Tensor cpu_float(const at::Tensor& t);
// The state of this rank's CPU generator, or of its CUDA generator.
at::Tensor generator_state(bool cuda);
void set_generator_state(bool cuda, const at::Tensor& state);
// Test hook: CORD_TEST_CRASH_DURING_SAVE=written|renamed kills rank 0 with SIGKILL right
// after that phase of a save, so that tests reach the windows between the phases.
void crash_point(const char* phase);
std::string join_keys(const std::vector<std::string>& keys);

// This rank's generator states at the moment of a step's checkpoint (`cuda`: undefined
// on a CPU run).
struct GeneratorStates {
  at::Tensor cpu, cuda;
};
GeneratorStates capture_generator_states(const std::string& device);

// save_checkpoint with the generator states captured earlier: the asynchronous writer
// captures them at the step and writes later, on its own thread and communicators.
SavedCheckpoint save_captured_checkpoint(const SaveRequest& request, const std::vector<ShardedTensor>& tensors,
                                         const comm::ProcessGroups& groups, const Retention& retention,
                                         const std::vector<std::string>& superseded, const GeneratorStates& states);

}  // namespace cord::ckpt::detail
