// save_checkpoint, phase by phase: the space check, the checksums, the collective write,
// the commit and the retention deletes (the file layout is in checkpoint.hpp).
#include <sys/statvfs.h>

#include <torch/torch.h>

#include <cstdio>
#include <future>
#include <memory>

#include "checkpoint_internal.hpp"
#include "cord/ckpt/checkpoint.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "cord/core/files.hpp"
#include "cord/core/progress.hpp"
#include "file_attributes.hpp"

namespace cord::ckpt {
namespace {

using namespace detail;

// 64-bit sums carried through an int64 all-reduce as 32-bit halves, so nothing overflows.
void set_halves(at::Tensor& halves, int64_t slot, uint64_t sum) {
  halves[slot][0] = static_cast<int64_t>(sum & 0xFFFFFFFFULL);
  halves[slot][1] = static_cast<int64_t>(sum >> 32);
}
std::string join_halves(const at::Tensor& pair) {
  return hex64(static_cast<uint64_t>(pair[0].item<int64_t>()) + (static_cast<uint64_t>(pair[1].item<int64_t>()) << 32));
}

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// One save_checkpoint, phase by phase. Every rank runs every phase; a phase that can fail
// on some ranks only ends with an agreement, so that all ranks throw together.
class CheckpointSave {
 public:
  CheckpointSave(const SaveRequest& request, const std::vector<ShardedTensor>& tensors,
                 const comm::ProcessGroups& groups, const Retention& retention,
                 const std::vector<std::string>& superseded, const GeneratorStates& states)
      : request_(request),
        tensors_(tensors),
        groups_(groups),
        retention_(retention),
        superseded_(superseded),
        cpu_state_(states.cpu),
        cuda_state_(states.cuda) {
    saved_.path = request.directory + "/" + checkpoint_file_name(request.progress.step);
    temporary_ = temporary_name(saved_.path, static_cast<long>(request.progress.step));
    what_ = "cannot save checkpoint " + saved_.path;
  }

  SavedCheckpoint run() {
    const auto start = Clock::now();
    set_progress_phase("checkpoint save");  // each dataset written marks progress (h5.cpp)
    if (retention_.remover != nullptr) retention_.remover->wait();  // the folder listing must not race them
    check_space();
    start_checksums();
    write_file();
    commit();
    saved_.seconds = seconds_between(start, Clock::now());
    return saved_;
  }

 private:
  bool rank0() const { return groups_.world.rank() == 0; }
  bool cuda() const { return at::Device(request_.device).is_cuda(); }

  // 1. The folder and its free space (rank 0), agreed before any collective file call.
  void check_space() {
    std::string failure;
    if (rank0()) {
      try {
        make_directories(request_.directory);
        for (const std::string& stale : list_partials(request_.directory)) {
          std::remove((request_.directory + "/" + stale).c_str());
        }
        int64_t needed = 1 << 20;
        for (const ShardedTensor& t : tensors_) needed += 4 * numel_of(t.global_shape);
        struct statvfs fs {};
        if (statvfs(request_.directory.c_str(), &fs) != 0) {
          throw Error("cannot read the free space of " + request_.directory);
        }
        const auto available = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
        if (available < needed) {
          throw Error("not enough space in " + request_.directory + ": the checkpoint needs about " +
                      std::to_string(needed >> 20) + " MiB, " + std::to_string(available >> 20) + " MiB are free");
        }
      } catch (const std::exception& e) {
        failure = e.what();
      }
    }
    agree_or_throw(failure, groups_.world, what_);
  }

  // 2. Checksums: each writer sums its blocks, and the sums of a tensor's blocks add up to
  //    the tensor's checksum. The tensors' sums run on a helper thread while this one writes
  //    the file (their attributes are set after the data); the small rows' sums here.
  void start_checksums() {
    blocks_.resize(tensors_.size());
    for (size_t i = 0; i < tensors_.size(); ++i) {
      if (!tensors_[i].writes) continue;
      CORD_CHECK(tensors_[i].local.defined(), "checkpoint tensor " + tensors_[i].key + ": a writer without data");
      blocks_[i] = cpu_float(tensors_[i].local);
    }
    block_sums_ = std::async(std::launch::async, [this] {
      std::vector<uint64_t> sums(tensors_.size(), 0);
      for (size_t i = 0; i < tensors_.size(); ++i) {
        const ShardedTensor& t = tensors_[i];
        if (t.writes) sums[i] = block_checksum(blocks_[i], t.global_shape, t.split_dim, t.offset);
      }
      return sums;
    });
    const Progress& p = request_.progress;
    CORD_CHECK(cpu_state_.defined() && (!cuda() || cuda_state_.defined()),
               "checkpoint of step " + std::to_string(p.step) + ": generator states not captured");
    loader_row_ = torch::tensor({p.loader_epoch, p.loader_next_batch, p.loader_seed}, torch::kInt64);
    // Rows of /loader and /rng/*: their checksums are sums over the writers' rows too.
    auto row_checksum = [](const at::Tensor& row, int64_t index, int64_t rows) {
      return block_checksum(row.unsqueeze(0).contiguous(), {rows, row.numel()}, 0, index);
    };
    const comm::ProcessGroup& world = groups_.world;
    row_halves_ = torch::zeros({3, 2}, torch::kInt64);
    if (groups_.tp.rank() == 0) set_halves(row_halves_, 0, row_checksum(loader_row_, groups_.dp.rank(), groups_.dims.dp()));
    set_halves(row_halves_, 1, row_checksum(cpu_state_, world.rank(), world.size()));
    if (cuda()) set_halves(row_halves_, 2, row_checksum(cuda_state_, world.rank(), world.size()));
    comm::all_reduce(world, row_halves_, comm::ReduceOp::kSum);
  }

  CheckpointHeader header() const {
    const comm::ProcessGroup& world = groups_.world;
    CheckpointHeader h;
    h.progress = request_.progress;
    h.world = world.size();
    h.dp = groups_.dims.dp();
    h.tp = groups_.dims.tp();
    h.zero1 = request_.zero1 ? 1 : 0;
    h.device = request_.device;
    // Every rank must pass the same values: rank 0's host and clock.
    h.host = comm::broadcast_string(world, process_host(), 0);
    h.created = comm::broadcast_string(world, utc_now(), 0);
    h.sampler = request_.sampler;
    return h;
  }

  // 3. The file, collectively: metadata from every rank (the same values), each block from its writer.
  void write_file() {
    std::string failure;
    write_start_ = Clock::now();
    try {
      // One rank writes through the POSIX driver: MPI-IO brings nothing to a single writer,
      // and its close syncs the file, which the commit does anyway.
      h5::File file = h5::File::create(temporary_, groups_.world.size() > 1 ? groups_.world.mpi_comm() : MPI_COMM_NULL);
      // The disk starts on the file while later tensors are still being written, so the
      // commit's fsync waits only for the tail (bench/results/ckpt_io.md). Rank 0's node
      // only: on other nodes MPI-IO's close syncs.
      const auto writeback = rank0() ? std::make_unique<BackgroundWriteback>(temporary_) : nullptr;
      file.set_attribute("/", "format", std::string(kFormat));
      file.set_attribute("/", "version", kVersion);
      write_header(file, header());
      file.set_attribute("/", "tensors", join_keys(dataset_keys()));
      detail::write_model_attributes(file, request_.model, request_.vocab, request_.config_toml);
      for (const char* group : {"/params", "/optim", "/optim/exp_avg", "/optim/exp_avg_sq", "/rng"}) {
        file.create_group(group);
      }
      write_tensors(file);
      write_rows(file);
      set_tensor_checksums(file);
      file.close();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (rank0() && !failure.empty()) std::remove(temporary_.c_str());
    agree_or_throw(failure, groups_.world, what_);
  }

  std::vector<std::string> dataset_keys() const {
    std::vector<std::string> keys;
    for (const ShardedTensor& t : tensors_) keys.push_back(t.key);
    keys.insert(keys.end(), {"loader", "rng/cpu"});
    if (cuda()) keys.push_back("rng/cuda");
    return keys;
  }

  void write_tensors(h5::File& file) const {
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const ShardedTensor& t = tensors_[i];
      const std::string dataset = "/" + t.key;
      file.create_dataset(dataset, h5::Dtype::kFloat32, unsigned_shape(t.global_shape));
      std::vector<uint64_t> block_start, block_count;
      if (t.writes) block_of(t, block_start, block_count);
      else block_start = block_count = std::vector<uint64_t>(unsigned_shape(t.global_shape).size(), 0);
      file.write_block(dataset, block_start, block_count, t.writes ? blocks_[i].data_ptr() : nullptr,
                       h5::Dtype::kFloat32);
      if (i == tensors_.size() / 2) maybe_stop_for_test("save", request_.progress.step, groups_.world.rank());
    }
  }

  // /loader (one row per dp rank, written by its tp rank 0) and /rng/* (one row per rank).
  void write_rows(h5::File& file) const {
    const comm::ProcessGroup& world = groups_.world;
    const bool loader_writer = groups_.tp.rank() == 0;
    file.create_dataset("/loader", h5::Dtype::kInt64, {static_cast<uint64_t>(groups_.dims.dp()), 3});
    file.set_attribute("/loader", "checksum", join_halves(row_halves_[0]));
    file.write_rows("/loader", static_cast<uint64_t>(groups_.dp.rank()), loader_writer ? 1 : 0, loader_row_.data_ptr(),
                    h5::Dtype::kInt64);
    auto write_states = [&](const std::string& dataset, const at::Tensor& state, int64_t slot) {
      file.create_dataset(dataset, h5::Dtype::kUInt8,
                          {static_cast<uint64_t>(world.size()), static_cast<uint64_t>(state.numel())});
      file.set_attribute(dataset, "checksum", join_halves(row_halves_[slot]));
      file.write_rows(dataset, static_cast<uint64_t>(world.rank()), 1, state.data_ptr(), h5::Dtype::kUInt8);
    };
    write_states("/rng/cpu", cpu_state_, 1);
    if (cuda()) write_states("/rng/cuda", cuda_state_, 2);
  }

  void set_tensor_checksums(h5::File& file) {
    const std::vector<uint64_t> sums = block_sums_.get();
    at::Tensor halves = torch::zeros({static_cast<int64_t>(tensors_.size()), 2}, torch::kInt64);
    for (size_t i = 0; i < sums.size(); ++i) set_halves(halves, static_cast<int64_t>(i), sums[i]);
    comm::all_reduce(groups_.world, halves, comm::ReduceOp::kSum);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      file.set_attribute("/" + tensors_[i].key, "checksum", join_halves(halves[static_cast<int64_t>(i)]));
    }
  }

  // 4. Commit (rank 0): fsync, rename into place, then the marker; retention after that.
  void commit() {
    std::string failure;
    // [bytes, write, commit, cleanup seconds] from rank 0 (bytes exact in a double below 2^53).
    at::Tensor outcome = torch::zeros({4}, torch::kFloat64);
    if (rank0()) {
      try {
        const auto commit_start = Clock::now();
        fsync_path(temporary_, false);
        crash_point("written");
        commit_rename(temporary_, saved_.path);
        crash_point("renamed");
        write_file_atomically(request_.directory + "/" + kMarker, checkpoint_file_name(request_.progress.step) + "\n");
        const auto cleanup_start = Clock::now();
        apply_retention();
        outcome[0] = static_cast<double>(file_size(saved_.path));
        outcome[1] = seconds_between(write_start_, commit_start);
        outcome[2] = seconds_between(commit_start, cleanup_start);
        outcome[3] = seconds_between(cleanup_start, Clock::now());
      } catch (const std::exception& e) {
        std::remove(temporary_.c_str());
        failure = e.what();
      }
    }
    agree_or_throw(failure, groups_.world, what_);
    comm::broadcast(groups_.world, outcome, 0);
    const auto outcome_a = outcome.accessor<double, 1>();
    saved_.bytes = static_cast<int64_t>(outcome_a[0]);
    saved_.write_seconds = outcome_a[1];
    saved_.commit_seconds = outcome_a[2];
    saved_.cleanup_seconds = outcome_a[3];
  }

  // 5. Retention (rank 0, after the commit): the victims deleted now or by the remover.
  void apply_retention() {
    const std::vector<std::string> victims =
        retention_victims(request_.directory, request_.progress.step, retention_, superseded_);
    if (retention_.remover != nullptr) {
      saved_.removed = victims;
      retention_.remover->start(request_.directory, victims);
      return;
    }
    for (const std::string& victim : victims) {
      if (std::remove((request_.directory + "/" + victim).c_str()) == 0) saved_.removed.push_back(victim);
    }
  }

  const SaveRequest& request_;
  const std::vector<ShardedTensor>& tensors_;
  const comm::ProcessGroups& groups_;
  const Retention& retention_;
  const std::vector<std::string>& superseded_;
  SavedCheckpoint saved_;
  std::string temporary_, what_;
  std::vector<at::Tensor> blocks_;  // the writers' blocks on the CPU, float32
  std::future<std::vector<uint64_t>> block_sums_;
  at::Tensor cpu_state_, cuda_state_, loader_row_;
  at::Tensor row_halves_;  // [3, 2]: checksums of /loader, /rng/cpu, /rng/cuda
  Clock::time_point write_start_;
};

}  // namespace

namespace detail {

GeneratorStates capture_generator_states(const std::string& device) {
  GeneratorStates states;
  states.cpu = generator_state(false);
  if (at::Device(device).is_cuda()) states.cuda = generator_state(true);
  return states;
}

SavedCheckpoint save_captured_checkpoint(const SaveRequest& request, const std::vector<ShardedTensor>& tensors,
                                         const comm::ProcessGroups& groups, const Retention& retention,
                                         const std::vector<std::string>& superseded, const GeneratorStates& states) {
  return CheckpointSave(request, tensors, groups, retention, superseded, states).run();
}

}  // namespace detail

SavedCheckpoint save_checkpoint(const SaveRequest& request, const std::vector<ShardedTensor>& tensors,
                                const comm::ProcessGroups& groups, const Retention& retention,
                                const std::vector<std::string>& superseded) {
  return detail::save_captured_checkpoint(request, tensors, groups, retention, superseded,
                                          detail::capture_generator_states(request.device));
}

}  // namespace cord::ckpt
