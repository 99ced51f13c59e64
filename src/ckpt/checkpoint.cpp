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
#include <type_traits>
#include <variant>

#include "cord/comm/agree.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/core/build_info.hpp"
#include "cord/core/checksum.hpp"
#include "cord/core/error.hpp"
#include "cord/core/files.hpp"
#include "cord/h5/h5.hpp"
#include "checkpoint_internal.hpp"
#include "file_attributes.hpp"

namespace cord::ckpt {
namespace detail {

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

int64_t file_size(const std::string& path) {
  struct stat info {};
  return stat(path.c_str(), &info) == 0 ? static_cast<int64_t>(info.st_size) : -1;
}

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

void agree_or_throw(const std::string& failure, const comm::ProcessGroup& world, const std::string& what) {
  const comm::Agreement agreed = comm::agree(world, failure);
  if (agreed.ok()) return;
  throw Error(what + ": " + agreed.message +
              (world.size() > 1 ? " (rank " + std::to_string(agreed.first_failed) + ")" : ""));
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
int64_t marker_step(const std::string& directory, std::string* named) {
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

std::string join_keys(const std::vector<std::string>& keys) { return join_lines(keys); }

}  // namespace detail

using namespace detail;

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
    if (element == 1) sum += checksum_bytes(values, first, run);
    else if (element == 4) sum += checksum_words(reinterpret_cast<const uint32_t*>(values), first, run);
    else sum += checksum_words(reinterpret_cast<const uint32_t*>(values), 2 * first, 2 * run);
  }
  return sum;
}

void BackgroundRemover::wait() {
  if (pending_.valid()) pending_.get();
}

void BackgroundRemover::start(const std::string& directory, std::vector<std::string> names) {
  wait();
  pending_ = std::async(std::launch::async, [directory, names = std::move(names)] {
    for (const std::string& name : names) std::remove((directory + "/" + name).c_str());
  });
}

namespace detail {
namespace {

// --- the header: every root attribute of CheckpointHeader, once --------------------------

template <typename Owner>
using AttributeMember = std::variant<int64_t Owner::*, double Owner::*, std::string Owner::*>;
template <typename Owner>
struct Attribute {
  const char* name;
  AttributeMember<Owner> member;
  bool optional;  // absent from checkpoints written before the field existed
};

const Attribute<Progress> kProgressAttributes[] = {
    {"stage", &Progress::stage, false},
    {"step", &Progress::step, false},
    {"optimizer_steps", &Progress::optimizer_steps, false},
    {"skipped", &Progress::skipped, false},
    {"skipped_in_a_row", &Progress::skipped_in_a_row, false},
    {"last_loss", &Progress::last_loss, false},
    {"train_seconds", &Progress::train_seconds, false},
    {"run_id", &Progress::run_id, false},
    {"log_window", &Progress::log_window, true},
};

const Attribute<CheckpointHeader> kLayoutAttributes[] = {
    {"layout_world", &CheckpointHeader::world, false},
    {"layout_dp", &CheckpointHeader::dp, false},
    {"layout_tp", &CheckpointHeader::tp, false},
    {"zero1", &CheckpointHeader::zero1, false},
    {"device", &CheckpointHeader::device, false},
    {"host", &CheckpointHeader::host, false},
    {"created", &CheckpointHeader::created, false},
    {"sampler", &CheckpointHeader::sampler, true},
};

template <typename Owner, size_t N>
void write_attributes(h5::File& file, const Owner& owner, const Attribute<Owner> (&table)[N]) {
  for (const Attribute<Owner>& a : table) {
    std::visit([&](auto member) { file.set_attribute("/", a.name, owner.*member); }, a.member);
  }
}

template <typename Owner, size_t N>
void read_attributes(const h5::File& file, Owner& owner, const Attribute<Owner> (&table)[N]) {
  for (const Attribute<Owner>& a : table) {
    if (a.optional && !file.has_attribute("/", a.name)) continue;
    std::visit(
        [&](auto member) {
          using Value = std::decay_t<decltype(owner.*member)>;
          if constexpr (std::is_same_v<Value, int64_t>) owner.*member = file.attribute_int("/", a.name);
          else if constexpr (std::is_same_v<Value, double>) owner.*member = file.attribute_double("/", a.name);
          else owner.*member = file.attribute_string("/", a.name);
        },
        a.member);
  }
}

}  // namespace

void write_header(h5::File& file, const CheckpointHeader& header) {
  write_attributes(file, header.progress, kProgressAttributes);
  write_attributes(file, header, kLayoutAttributes);
}

CheckpointHeader read_header(const h5::File& file) {
  CheckpointHeader header;
  read_attributes(file, header.progress, kProgressAttributes);
  read_attributes(file, header, kLayoutAttributes);
  return header;
}

}  // namespace detail

Progress load_checkpoint(const std::string& path, const std::vector<ShardedTensor>& tensors,
                         const comm::ProcessGroups& groups, const ModelConfig& model, const std::string& stage) {
  if (!exists(path)) throw UsageError("checkpoint " + path + " does not exist");
  const h5::File file = h5::File::open_read_only(path);
  detail::check_file_kind(file, path, "checkpoint", kFormat, kVersion, model);
  const CheckpointHeader header = read_header(file);
  Progress progress = header.progress;
  if (progress.stage != stage) {
    throw UsageError("checkpoint " + path + " belongs to stage " + progress.stage + ", not to train.stage = " + stage);
  }

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
  if (loader.empty() || loader.size() % 3 != 0) {
    throw Error("checkpoint " + path + ": dataset /loader holds " + std::to_string(loader.size()) +
                " values, not 3 (epoch, next batch, seed) per dp rank");
  }
  const auto saved_dp = static_cast<int64_t>(loader.size() / 3);
  const int64_t row = saved_dp == groups.dims.dp() ? groups.dp.rank() : 0;
  progress.loader_epoch = loader[static_cast<size_t>(3 * row)];
  progress.loader_next_batch = loader[static_cast<size_t>(3 * row + 1)];
  progress.loader_seed = loader[static_cast<size_t>(3 * row + 2)];

  // Generators: restored where the layout is the writer's (each rank its own row).
  if (header.world == groups.world.size()) {
    auto restore = [&](const std::string& dataset, bool cuda) {
      const h5::DatasetInfo info = file.dataset_info(dataset);
      at::Tensor state = torch::empty({static_cast<int64_t>(info.row_elements())}, torch::kUInt8);
      file.read_rows(dataset, static_cast<uint64_t>(groups.world.rank()), 1, state.data_ptr(), h5::Dtype::kUInt8);
      try {
        set_generator_state(cuda, state);
      } catch (const c10::Error& e) {  // a state of the wrong size or version
        throw Error("checkpoint " + path + ": dataset " + dataset + " is not a generator state this torch accepts: " +
                    e.what_without_backtrace());
      }
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
    info.header = read_header(file);
    info.commit = file.attribute_string("/", "commit");
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
        file.check_plausible_size(dataset, shape, c10::elementSize(dtype));  // a damaged shape claims any size
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
