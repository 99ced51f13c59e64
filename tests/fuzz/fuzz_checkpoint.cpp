// libFuzzer target: a training checkpoint file, read the two ways cord reads one:
// inspect_checkpoint(verify) as `cord ckpt verify` and `--resume auto` do (header, tensor
// list, every checksum), then load_checkpoint into a fixed set of tensors, as a resume does
// after the checksums passed (here it runs on every input, so that a file whose checksums
// happen to agree cannot reach an unchecked path either). inspect must never throw; load
// may refuse with a cord::Error. No HDF5 object may be left open afterwards.
//
// The seed (tests/fuzz/seeds/checkpoint/) is written by this program with the same tensors:
//   CORD_FUZZ_WRITE_SEED=tests/fuzz/seeds/checkpoint/step3.h5 build-fuzz/fuzz_checkpoint
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cord/ckpt/checkpoint.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"
#include "cord/core/error.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace cord;

constexpr const char* kStage = "distill";

// One rank (an MPI singleton) and the tensors of a small run: a split-free parameter, a
// scalar and an optimizer moment, in the shapes the seed was written with.
struct Fixture {
  Fixture(int* argc, char*** argv)
      : world(argc, argv), groups(comm::make_process_groups(world, comm::ParallelDims::resolve(0, 1, 1), false)) {
    torch::manual_seed(3);
    tensors.push_back(whole("params/decoder.embed.weight", {6, 4}));
    tensors.push_back(whole("params/decoder.norm.scale", {}));
    tensors.push_back(whole("optim/exp_avg/decoder.embed.weight", {6, 4}));
  }
  static ckpt::ShardedTensor whole(const std::string& key, std::vector<int64_t> shape) {
    ckpt::ShardedTensor t;
    t.key = key;
    t.local = torch::randn(shape);
    t.global_shape = std::move(shape);
    t.writes = true;
    return t;
  }
  comm::World world;
  comm::ProcessGroups groups;
  ModelConfig model;
  std::vector<ckpt::ShardedTensor> tensors;
};
Fixture* fixture = nullptr;

// CORD_FUZZ_WRITE_SEED=PATH: saves the fixture's checkpoint (step 3) as PATH and exits.
void write_seed(const std::string& path) {
  char folder[] = "/tmp/fuzz_checkpoint_seed_XXXXXX";
  if (mkdtemp(folder) == nullptr) std::exit(2);
  ckpt::SaveRequest request;
  request.directory = folder;
  request.progress.stage = kStage;
  request.progress.step = 3;
  request.progress.optimizer_steps = 3;
  request.progress.run_id = "fuzz-seed";
  request.config_toml = "[train]\nstage = \"distill\"\n";
  request.vocab = {"<pad>", "<bos>", "<eos>", "a"};
  request.device = "cpu";
  request.sampler = "fixed";
  const ckpt::SavedCheckpoint saved = ckpt::save_checkpoint(request, fixture->tensors, fixture->groups, {});
  const int moved = std::rename(saved.path.c_str(), path.c_str());
  std::system(("rm -rf " + std::string(folder)).c_str());
  std::exit(moved == 0 ? 0 : 2);
}

}  // namespace

// MPI_Finalize (when the fixture is destroyed at exit) and the MCA components it unloads
// leave allocations behind as well: no leak check at exit; every input is still checked.
extern "C" const char* __lsan_default_options() { return "leak_check_at_exit=0"; }

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  fixture = cord::fuzz::start_fixture<Fixture>("fuzz_checkpoint", argc, argv);
  if (const char* seed = std::getenv("CORD_FUZZ_WRITE_SEED")) write_seed(seed);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = cord::fuzz::write_input("fuzz_checkpoint", data, size);
  const cord::ckpt::CheckpointInfo info = cord::ckpt::inspect_checkpoint(path, /*verify=*/true);
  cord::fuzz::abort_if_hdf5_objects_open("fuzz_checkpoint (inspect)");
  if (!info.verified) cord::fuzz::abort_if_expected_valid("fuzz_checkpoint", info.problem);
  try {
    (void)cord::ckpt::load_checkpoint(path, fixture->tensors, fixture->groups, fixture->model, kStage);
  } catch (const cord::Error& e) {  // UsageError included: a refused file
    cord::fuzz::abort_if_expected_valid("fuzz_checkpoint", e.what());
  }
  cord::fuzz::abort_if_hdf5_objects_open("fuzz_checkpoint (load)");
  return 0;
}
