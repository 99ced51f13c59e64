#include "cord/ckpt/checkpoint.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/torch.h>

#include <algorithm>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <future>
#include <mutex>
#include <numeric>
#include <sstream>

#include "cord/comm/collectives.hpp"
#include "cord/core/build_info.hpp"
#include "cord/core/error.hpp"
#include "cord/core/files.hpp"
#include "cord/h5/h5.hpp"
#include "checksum.hpp"
#include "file_attributes.hpp"

namespace cord::ckpt {
namespace {

constexpr const char* kFormat = "cord-checkpoint";
constexpr int64_t kVersion = 2;  // 2: 32-bit checksum terms (checksum.hpp)
constexpr const char* kMarker = "latest";

using Clock = std::chrono::steady_clock;

std::string hex64(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm parts{};
  gmtime_r(&now, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

std::string this_host() {
  char name[256] = {0};
  gethostname(name, sizeof name - 1);
  return name;
}

int64_t file_size(const std::string& path) {
  struct stat info {};
  return stat(path.c_str(), &info) == 0 ? static_cast<int64_t>(info.st_size) : -1;
}

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Every rank learns whether any rank failed; all of them then throw the lowest failing
// rank's message (broadcast), so the job ends with the real cause whichever rank logs first.
void agree_or_throw(const std::string& failure, const comm::ProcessGroup& world, const std::string& what) {
  // The lowest failing rank, as a max over (size - rank).
  at::Tensor first = torch::tensor({failure.empty() ? int64_t{0} : int64_t{world.size() - world.rank()}}, torch::kInt64);
  comm::all_reduce(world, first, comm::ReduceOp::kMax);
  if (first.item<int64_t>() == 0) return;
  const int64_t root = world.size() - first.item<int64_t>();
  const std::string message = comm::broadcast_string(world, failure, static_cast<int>(root));
  throw Error(what + ": " + message + (world.size() > 1 ? " (rank " + std::to_string(root) + ")" : ""));
}

// Checkpoint files in `directory` as (step, file name), ascending by step.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& directory) {
  std::vector<std::pair<int64_t, std::string>> found;
  DIR* dir = opendir(directory.c_str());
  if (dir == nullptr) return found;
  while (const dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    long long step = -1;
    char tail[8] = {0};
    if (name.size() == checkpoint_file_name(0).size() &&
        std::sscanf(name.c_str(), "step-%8lld.%3s", &step, tail) == 2 && std::string(tail) == "h5" && step >= 0) {
      found.emplace_back(step, name);
    }
  }
  closedir(dir);
  std::sort(found.begin(), found.end());
  return found;
}

// Temporary files of writers that died (".step-00000120.h5.partial-120").
std::vector<std::string> list_partials(const std::string& directory) {
  std::vector<std::string> found;
  DIR* dir = opendir(directory.c_str());
  if (dir == nullptr) return found;
  while (const dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.rfind(".step-", 0) == 0 && name.find(".h5.partial-") != std::string::npos) found.push_back(name);
  }
  closedir(dir);
  return found;
}

// The step the commit marker names, or -1 without a (readable) marker; `named` gets its text.
int64_t marker_step(const std::string& directory, std::string* named = nullptr) {
  std::ifstream in(directory + "/" + kMarker);
  std::string name;
  if (!in || !(in >> name)) return -1;
  if (named != nullptr) *named = name;
  long long step = -1;
  if (std::sscanf(name.c_str(), "step-%8lld.h5", &step) != 1) return -1;
  return step;
}

std::vector<uint64_t> unsigned_shape(const std::vector<int64_t>& shape) {
  if (shape.empty()) return {1};
  return {shape.begin(), shape.end()};
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

// The block of `t` in the global dataset: start and count per dimension.
void block_of(const ShardedTensor& t, std::vector<uint64_t>& start, std::vector<uint64_t>& count) {
  count = t.local.dim() == 0 ? std::vector<uint64_t>{1}
                             : std::vector<uint64_t>(t.local.sizes().begin(), t.local.sizes().end());
  start.assign(count.size(), 0);
  if (t.split_dim >= 0) start[static_cast<size_t>(t.split_dim)] = static_cast<uint64_t>(t.offset);
}

at::Tensor cpu_float(const at::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat).contiguous(); }

// The state of this rank's CPU generator, and of its CUDA generator on a CUDA run.
at::Tensor generator_state(bool cuda) {
  if (!cuda) return at::Tensor(at::globalContext().defaultGenerator(c10::DeviceType::CPU).get_state());
  const auto index = at::detail::getCUDAHooks().current_device();
  return at::Tensor(at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CUDA, index)).get_state());
}

void set_generator_state(bool cuda, const at::Tensor& state) {
  // defaultGenerator() hands out a const reference to a shared handle; a copy of the handle
  // sets the state of the same generator.
  at::Generator generator =
      cuda ? at::globalContext().defaultGenerator(
                 c10::Device(c10::DeviceType::CUDA, at::detail::getCUDAHooks().current_device()))
           : at::globalContext().defaultGenerator(c10::DeviceType::CPU);
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

// Test hook: CORD_TEST_CRASH_DURING_SAVE=written|renamed kills rank 0 with SIGKILL right
// after that phase of a save, so that tests reach the windows between the phases.
void crash_point(const char* phase) {
  const char* wanted = std::getenv("CORD_TEST_CRASH_DURING_SAVE");
  if (wanted != nullptr && std::strcmp(wanted, phase) == 0) std::raise(SIGKILL);
}

// Committed files to delete after the commit of `new_step`.
std::vector<std::string> retention_victims(const std::string& directory, int64_t new_step, const Retention& retention,
                                           const std::vector<std::string>& superseded) {
  const auto files = list_checkpoints(directory);
  std::vector<std::string> victims;
  std::vector<std::pair<int64_t, std::string>> committed;
  for (const auto& [step, name] : files) {
    if (step > new_step) {
      victims.push_back(name);  // an abandoned timeline (resumed from an earlier checkpoint)
    } else if (step != new_step &&
               std::find(superseded.begin(), superseded.end(), name) != superseded.end()) {
      victims.push_back(name);  // an earlier run's, replaced by this run
    } else {
      committed.emplace_back(step, name);
    }
  }
  const auto keep_last = static_cast<size_t>(std::max<int64_t>(1, retention.keep_last));
  for (size_t i = 0; i < committed.size(); ++i) {
    const auto& [step, name] = committed[i];
    const bool recent = i + keep_last >= committed.size();
    const bool milestone = retention.keep_every > 0 && step % retention.keep_every == 0;
    if (!recent && !milestone) victims.push_back(name);
  }
  return victims;
}

std::string join_keys(const std::vector<std::string>& keys) { return detail::join_lines(keys); }

// The deletes of the last save with Retention::in_background. A function-local static: at
// exit its destructor waits for them (std::async's shared state blocks until done).
std::future<void>& pending_removals() {
  static std::future<void> pending;
  return pending;
}

}  // namespace

std::string checkpoint_file_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld.h5", static_cast<long long>(step));
  return name;
}

uint64_t block_checksum(const at::Tensor& block, const std::vector<int64_t>& global_shape, int split_dim,
                        int64_t offset) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checksum words of 8-byte elements assume little-endian");
  CORD_CHECK(block.is_contiguous() && block.device().is_cpu(), "block_checksum needs a contiguous CPU tensor");
  const auto* bytes = static_cast<const uint8_t*>(block.data_ptr());
  const size_t element = block.element_size();
  CORD_CHECK(element == 1 || element == 4 || element == 8, "block_checksum: elements of 1, 4 or 8 bytes");
  // View the block as [outer, local * inner] around split_dim: run o holds the global
  // flat indices from (o * global_split + offset) * inner on, local * inner of them.
  int64_t outer = 1, local = 1, global = 1, inner = block.numel();
  if (split_dim >= 0) {
    for (int d = 0; d < split_dim; ++d) outer *= block.size(d);
    local = block.size(split_dim);
    global = global_shape[static_cast<size_t>(split_dim)];
    inner = 1;
    for (int64_t d = split_dim + 1; d < block.dim(); ++d) inner *= block.size(d);
  } else {
    offset = 0;
  }
  // Runs on one thread: it is memory-bound, and save_checkpoint calls it from a helper
  // thread while its own thread writes the file.
  const int64_t run = local * inner;
  uint64_t sum = 0;
  for (int64_t o = 0; o < outer; ++o) {
    const auto first = static_cast<uint64_t>((o * global + offset) * inner);
    const uint8_t* values = bytes + o * run * static_cast<int64_t>(element);
    if (element == 1) sum += detail::checksum_bytes(values, first, run);
    else if (element == 4) sum += detail::checksum_words(reinterpret_cast<const uint32_t*>(values), first, run);
    else sum += detail::checksum_words(reinterpret_cast<const uint32_t*>(values), 2 * first, 2 * run);
  }
  return sum;
}

void wait_for_background_removals() {
  std::future<void>& pending = pending_removals();
  if (pending.valid()) pending.get();
}

SavedCheckpoint save_checkpoint(const SaveRequest& request, const std::vector<ShardedTensor>& tensors,
                                const comm::ProcessGroups& groups, const Retention& retention,
                                const std::vector<std::string>& superseded) {
  const auto start = Clock::now();
  wait_for_background_removals();  // the folder listing below must not race the last deletes
  const comm::ProcessGroup& world = groups.world;
  const bool rank0 = world.rank() == 0;
  const Progress& progress = request.progress;
  const bool cuda = request.device.rfind("cuda", 0) == 0;
  SavedCheckpoint saved;
  saved.path = request.directory + "/" + checkpoint_file_name(progress.step);
  const std::string temporary = temporary_name(saved.path, static_cast<long>(progress.step));
  const std::string what = "cannot save checkpoint " + saved.path;

  // 1. The folder and its free space (rank 0), agreed before any collective file call.
  std::string failure;
  if (rank0) {
    try {
      make_directories(request.directory);
      for (const std::string& stale : list_partials(request.directory)) std::remove((request.directory + "/" + stale).c_str());
      int64_t needed = 1 << 20;
      for (const ShardedTensor& t : tensors) needed += 4 * numel_of(t.global_shape);
      struct statvfs fs {};
      if (statvfs(request.directory.c_str(), &fs) != 0) throw Error("cannot read the free space of " + request.directory);
      const auto available = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
      if (available < needed) {
        throw Error("not enough space in " + request.directory + ": the checkpoint needs about " +
                    std::to_string(needed >> 20) + " MiB, " + std::to_string(available >> 20) + " MiB are free");
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  agree_or_throw(failure, world, what);

  // 2. Checksums: each writer sums its blocks; the sums of a tensor's blocks add up to the
  //    tensor's checksum. Summed as 32-bit halves in int64 so that nothing overflows.
  //    The tensors' sums are computed by a helper thread while this one writes the file;
  //    their attributes are set after the data.
  std::vector<at::Tensor> blocks(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].writes) continue;
    CORD_CHECK(tensors[i].local.defined(), "checkpoint tensor " + tensors[i].key + ": a writer without data");
    blocks[i] = cpu_float(tensors[i].local);
  }
  std::future<std::vector<uint64_t>> block_sums = std::async(std::launch::async, [&] {
    std::vector<uint64_t> sums(tensors.size(), 0);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const ShardedTensor& t = tensors[i];
      if (t.writes) sums[i] = block_checksum(blocks[i], t.global_shape, t.split_dim, t.offset);
    }
    return sums;
  });
  const int64_t dp = groups.dims.dp();
  const at::Tensor cpu_state = generator_state(false);
  const at::Tensor cuda_state = cuda ? generator_state(true) : at::Tensor();
  const at::Tensor loader_row = torch::tensor({progress.loader_epoch, progress.loader_next_batch, progress.loader_seed},
                                              torch::kInt64);
  const bool loader_writer = groups.tp.rank() == 0;
  // Rows of /loader and /rng/*: their checksums are sums over the writers' rows too.
  auto row_checksum = [](const at::Tensor& row, int64_t index, int64_t rows) {
    return block_checksum(row.unsqueeze(0).contiguous(), {rows, row.numel()}, 0, index);
  };
  at::Tensor extra_halves = torch::zeros({3, 2}, torch::kInt64);
  auto add_halves = [&](int64_t slot, uint64_t sum) {
    extra_halves[slot][0] = static_cast<int64_t>(sum & 0xFFFFFFFFULL);
    extra_halves[slot][1] = static_cast<int64_t>(sum >> 32);
  };
  if (loader_writer) add_halves(0, row_checksum(loader_row, groups.dp.rank(), dp));
  add_halves(1, row_checksum(cpu_state, world.rank(), world.size()));
  if (cuda) add_halves(2, row_checksum(cuda_state, world.rank(), world.size()));
  comm::all_reduce(world, extra_halves, comm::ReduceOp::kSum);
  auto combine = [](const at::Tensor& pair) {
    return hex64(static_cast<uint64_t>(pair[0].item<int64_t>()) + (static_cast<uint64_t>(pair[1].item<int64_t>()) << 32));
  };

  // 3. The file, collectively: metadata from every rank (same values), each block from its writer.
  std::vector<std::string> keys;
  for (const ShardedTensor& t : tensors) keys.push_back(t.key);
  keys.insert(keys.end(), {"loader", "rng/cpu"});
  if (cuda) keys.push_back("rng/cuda");
  const auto write_start = Clock::now();
  try {
    // One rank writes through the POSIX driver: MPI-IO brings nothing to a single writer,
    // and its close syncs the file, which step 4 does anyway.
    h5::File file = h5::File::create(temporary, world.size() > 1 ? world.mpi_comm() : MPI_COMM_NULL);
    // The disk starts on the file while later tensors are still being written, so step 4's
    // fsync waits only for the tail (1.5x faster saves of the large config on one rank,
    // bench/results/ckpt_io.md). Rank 0's node only: on other nodes MPI-IO's close syncs.
    const auto writeback = rank0 ? std::make_unique<BackgroundWriteback>(temporary) : nullptr;
    file.set_attribute("/", "format", std::string(kFormat));
    file.set_attribute("/", "version", kVersion);
    file.set_attribute("/", "stage", progress.stage);
    file.set_attribute("/", "step", progress.step);
    file.set_attribute("/", "optimizer_steps", progress.optimizer_steps);
    file.set_attribute("/", "skipped", progress.skipped);
    file.set_attribute("/", "skipped_in_a_row", progress.skipped_in_a_row);
    file.set_attribute("/", "last_loss", progress.last_loss);
    file.set_attribute("/", "train_seconds", progress.train_seconds);
    file.set_attribute("/", "run_id", progress.run_id);
    file.set_attribute("/", "layout_world", static_cast<int64_t>(world.size()));
    file.set_attribute("/", "layout_dp", dp);
    file.set_attribute("/", "layout_tp", static_cast<int64_t>(groups.dims.tp()));
    file.set_attribute("/", "zero1", static_cast<int64_t>(request.zero1 ? 1 : 0));
    file.set_attribute("/", "device", request.device);
    // Every rank must pass the same values: rank 0's host and clock.
    file.set_attribute("/", "host", comm::broadcast_string(world, this_host(), 0));
    file.set_attribute("/", "created", comm::broadcast_string(world, utc_now(), 0));
    file.set_attribute("/", "sampler", request.sampler);
    file.set_attribute("/", "tensors", join_keys(keys));
    detail::write_model_attributes(file, request.model, request.vocab, request.config_toml);
    for (const char* group : {"/params", "/optim", "/optim/exp_avg", "/optim/exp_avg_sq", "/rng"}) {
      file.create_group(group);
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      const ShardedTensor& t = tensors[i];
      const std::string dataset = "/" + t.key;
      file.create_dataset(dataset, h5::Dtype::kFloat32, unsigned_shape(t.global_shape));
      std::vector<uint64_t> block_start, block_count;
      if (t.writes) block_of(t, block_start, block_count);
      else block_start = block_count = std::vector<uint64_t>(unsigned_shape(t.global_shape).size(), 0);
      file.write_block(dataset, block_start, block_count, t.writes ? blocks[i].data_ptr() : nullptr,
                       h5::Dtype::kFloat32);
    }
    file.create_dataset("/loader", h5::Dtype::kInt64, {static_cast<uint64_t>(dp), 3});
    file.set_attribute("/loader", "checksum", combine(extra_halves[0]));
    file.write_rows("/loader", static_cast<uint64_t>(groups.dp.rank()), loader_writer ? 1 : 0, loader_row.data_ptr(),
                    h5::Dtype::kInt64);
    auto write_states = [&](const std::string& dataset, const at::Tensor& state, int64_t slot) {
      file.create_dataset(dataset, h5::Dtype::kUInt8,
                          {static_cast<uint64_t>(world.size()), static_cast<uint64_t>(state.numel())});
      file.set_attribute(dataset, "checksum", combine(extra_halves[slot]));
      file.write_rows(dataset, static_cast<uint64_t>(world.rank()), 1, state.data_ptr(), h5::Dtype::kUInt8);
    };
    write_states("/rng/cpu", cpu_state, 1);
    if (cuda) write_states("/rng/cuda", cuda_state, 2);
    const std::vector<uint64_t> sums = block_sums.get();
    at::Tensor halves = torch::zeros({static_cast<int64_t>(tensors.size()), 2}, torch::kInt64);
    auto halves_a = halves.accessor<int64_t, 2>();
    for (size_t i = 0; i < sums.size(); ++i) {
      halves_a[static_cast<int64_t>(i)][0] = static_cast<int64_t>(sums[i] & 0xFFFFFFFFULL);
      halves_a[static_cast<int64_t>(i)][1] = static_cast<int64_t>(sums[i] >> 32);
    }
    comm::all_reduce(world, halves, comm::ReduceOp::kSum);
    for (size_t i = 0; i < tensors.size(); ++i) {
      file.set_attribute("/" + tensors[i].key, "checksum", combine(halves[static_cast<int64_t>(i)]));
    }
    file.close();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (rank0 && !failure.empty()) std::remove(temporary.c_str());
  agree_or_throw(failure, world, what);

  // 4. Commit (rank 0): fsync, rename into place, then the marker; retention after that.
  auto seconds_between = [](Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double>(to - from).count();
  };
  // [bytes, write, commit, cleanup seconds] from rank 0 (bytes exact in a double below 2^53).
  at::Tensor outcome = torch::zeros({4}, torch::kFloat64);
  if (rank0) {
    try {
      const auto commit_start = Clock::now();
      fsync_path(temporary, false);
      crash_point("written");
      commit_rename(temporary, saved.path);
      crash_point("renamed");
      write_file_atomically(request.directory + "/" + kMarker, checkpoint_file_name(progress.step) + "\n");
      const auto cleanup_start = Clock::now();
      const std::vector<std::string> victims = retention_victims(request.directory, progress.step, retention, superseded);
      if (retention.in_background) {
        saved.removed = victims;
        pending_removals() = std::async(std::launch::async, [directory = request.directory, victims] {
          for (const std::string& victim : victims) std::remove((directory + "/" + victim).c_str());
        });
      } else {
        for (const std::string& victim : victims) {
          if (std::remove((request.directory + "/" + victim).c_str()) == 0) saved.removed.push_back(victim);
        }
      }
      outcome[0] = static_cast<double>(file_size(saved.path));
      outcome[1] = seconds_between(write_start, commit_start);
      outcome[2] = seconds_between(commit_start, cleanup_start);
      outcome[3] = seconds_between(cleanup_start, Clock::now());
    } catch (const std::exception& e) {
      std::remove(temporary.c_str());
      failure = e.what();
    }
  }
  agree_or_throw(failure, world, what);
  comm::broadcast(world, outcome, 0);
  const auto outcome_a = outcome.accessor<double, 1>();
  saved.bytes = static_cast<int64_t>(outcome_a[0]);
  saved.write_seconds = outcome_a[1];
  saved.commit_seconds = outcome_a[2];
  saved.cleanup_seconds = outcome_a[3];
  saved.seconds = seconds_between(start, Clock::now());
  return saved;
}

Progress load_checkpoint(const std::string& path, const std::vector<ShardedTensor>& tensors,
                         const comm::ProcessGroups& groups, const ModelConfig& model, const std::string& stage) {
  if (!exists(path)) throw UsageError("checkpoint " + path + " does not exist");
  const h5::File file = h5::File::open_read_only(path);
  detail::check_file_kind(file, path, "checkpoint", kFormat, kVersion, model);
  Progress progress;
  progress.stage = file.attribute_string("/", "stage");
  if (progress.stage != stage) {
    throw UsageError("checkpoint " + path + " belongs to stage " + progress.stage + ", not to train.stage = " + stage);
  }
  progress.step = file.attribute_int("/", "step");
  progress.optimizer_steps = file.attribute_int("/", "optimizer_steps");
  progress.skipped = file.attribute_int("/", "skipped");
  progress.skipped_in_a_row = file.attribute_int("/", "skipped_in_a_row");
  progress.last_loss = file.attribute_double("/", "last_loss");
  progress.train_seconds = file.attribute_double("/", "train_seconds");
  progress.run_id = file.attribute_string("/", "run_id");

  torch::NoGradGuard no_grad;
  for (const ShardedTensor& t : tensors) {
    if (!t.local.defined()) continue;
    const std::string dataset = "/" + t.key;
    if (!file.exists(dataset)) {
      throw Error("checkpoint " + path + " has no tensor " + t.key +
                  " (written with other trainable parameters or another optimizer?)");
    }
    const h5::DatasetInfo info = file.dataset_info(dataset);
    if (info.shape != unsigned_shape(t.global_shape)) {
      std::vector<int64_t> stored(info.shape.begin(), info.shape.end());
      throw Error("checkpoint " + path + ": tensor " + t.key + " has shape " + c10::str(stored) +
                  ", this run expects " + c10::str(unsigned_shape(t.global_shape)));
    }
    std::vector<uint64_t> start, count;
    block_of(t, start, count);
    at::Tensor block = torch::empty(t.local.sizes(), torch::kFloat);
    file.read_block(dataset, start, count, block.data_ptr(), h5::Dtype::kFloat32);
    t.local.copy_(block);
  }

  // The loader's position: the global batch index is the same on every dp rank, so a
  // checkpoint written with another dp continues from the same place.
  const std::vector<int64_t> loader = file.read_all<int64_t>("/loader");
  const auto saved_dp = static_cast<int64_t>(loader.size() / 3);
  const int64_t row = saved_dp == groups.dims.dp() ? groups.dp.rank() : 0;
  progress.loader_epoch = loader[static_cast<size_t>(3 * row)];
  progress.loader_next_batch = loader[static_cast<size_t>(3 * row + 1)];
  progress.loader_seed = loader[static_cast<size_t>(3 * row + 2)];

  // Generators: restored where the layout is the writer's (each rank its own row).
  if (file.attribute_int("/", "layout_world") == groups.world.size()) {
    auto restore = [&](const std::string& dataset, bool cuda) {
      const h5::DatasetInfo info = file.dataset_info(dataset);
      at::Tensor state = torch::empty({static_cast<int64_t>(info.row_elements())}, torch::kUInt8);
      file.read_rows(dataset, static_cast<uint64_t>(groups.world.rank()), 1, state.data_ptr(), h5::Dtype::kUInt8);
      set_generator_state(cuda, state);
    };
    restore("/rng/cpu", false);
    if (file.exists("/rng/cuda") && at::hasCUDA()) restore("/rng/cuda", true);
  }
  return progress;
}

CheckpointInfo inspect_checkpoint(const std::string& path, bool verify) {
  CheckpointInfo info;
  info.path = path;
  info.bytes = file_size(path);
  if (info.bytes < 0) {
    info.problem = "does not exist";
    return info;
  }
  try {
    const h5::File file = h5::File::open_read_only(path);
    if (!file.has_attribute("/", "format") || file.attribute_string("/", "format") != kFormat) {
      info.problem = "not a cord checkpoint";
      return info;
    }
    info.stage = file.attribute_string("/", "stage");
    info.step = file.attribute_int("/", "step");
    info.optimizer_steps = file.attribute_int("/", "optimizer_steps");
    info.commit = file.attribute_string("/", "commit");
    info.created = file.attribute_string("/", "created");
    info.host = file.attribute_string("/", "host");
    info.device = file.attribute_string("/", "device");
    info.run_id = file.attribute_string("/", "run_id");
    info.world = file.attribute_int("/", "layout_world");
    info.dp = file.attribute_int("/", "layout_dp");
    info.tp = file.attribute_int("/", "layout_tp");
    info.zero1 = file.attribute_int("/", "zero1") != 0;
    for (const std::string& key : detail::split_lines(file.attribute_string("/", "tensors"))) {
      TensorInfo tensor;
      tensor.key = key;
      const std::string dataset = "/" + key;
      const h5::DatasetInfo shape = file.dataset_info(dataset);
      tensor.shape.assign(shape.shape.begin(), shape.shape.end());
      tensor.checksum = file.attribute_string(dataset, "checksum");
      if (verify) {
        const auto dtype = shape.dtype == h5::Dtype::kFloat32 ? torch::kFloat
                           : shape.dtype == h5::Dtype::kInt64 ? torch::kInt64
                                                              : torch::kUInt8;
        at::Tensor values = torch::empty(tensor.shape.empty() ? std::vector<int64_t>{1} : tensor.shape, dtype);
        file.read_rows(dataset, 0, shape.rows(), values.data_ptr(), shape.dtype);
        tensor.verified = hex64(block_checksum(values, tensor.shape, -1, 0)) == tensor.checksum;
        if (!tensor.verified && info.problem.empty()) info.problem = "checksum mismatch in dataset " + dataset;
      }
      info.tensors.push_back(std::move(tensor));
    }
    info.verified = verify && info.problem.empty();
  } catch (const std::exception& e) {
    info.problem = std::string("unreadable: ") + e.what();
    info.verified = false;
  }
  return info;
}

ResumeChoice choose_checkpoint(const std::string& resume, const std::string& directory) {
  ResumeChoice choice;
  if (resume == "none") return choice;
  if (resume != "auto") {
    const CheckpointInfo info = inspect_checkpoint(resume, true);
    if (!info.verified) throw UsageError("cannot resume from checkpoint " + resume + ": " + info.problem);
    choice.path = resume;
    return choice;
  }
  std::string named;
  const int64_t latest = marker_step(directory, &named);
  for (const auto& [step, name] : list_checkpoints(directory)) {
    if (latest < 0 || step > latest) choice.uncommitted.push_back(directory + "/" + name);
    else choice.existing.push_back(name);
  }
  if (latest < 0) return choice;  // no marker: nothing is committed
  if (!exists(directory + "/" + named)) {
    choice.rejected.push_back(directory + "/" + named + ": named by the commit marker but missing");
  }
  for (auto it = choice.existing.rbegin(); it != choice.existing.rend(); ++it) {
    const std::string path = directory + "/" + *it;
    const CheckpointInfo info = inspect_checkpoint(path, true);
    if (info.verified) {
      choice.path = path;
      return choice;
    }
    choice.rejected.push_back(path + ": " + info.problem);
  }
  std::string reasons;
  for (const std::string& r : choice.rejected) reasons += "\n  " + r;
  throw UsageError("resume auto: no checkpoint in " + directory + " verifies:" + reasons +
                   "\n(start over with --resume none, or name one with --resume PATH)");
}

}  // namespace cord::ckpt
