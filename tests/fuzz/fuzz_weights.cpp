// libFuzzer target: a weights file (RUN_DIR/STAGE/model.h5), loaded into a tiny model as
// every stage and `cord eval` load one: the header and architecture check, then every
// parameter's shape and values. Any input must load or end in a cord::Error, leaving no
// HDF5 object open.
//
// The seed (tests/fuzz/seeds/weights/) is written by this program from the same model:
//   CORD_FUZZ_WRITE_SEED=tests/fuzz/seeds/weights/tiny.h5 build-fuzz/fuzz_weights
#include <torch/torch.h>

#include <cstdlib>
#include <string>

#include "cord/ckpt/model_weights.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"
#include "cord/core/error.hpp"
#include "cord/model/lalm.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace cord;

// The smallest model with every kind of parameter (audio encoder, projector, decoder with
// grouped-query attention): a seed of 26 kB, so that mutations stay fast (the tests' tiny
// model of tests/model/model_fixtures.hpp is four times wider).
ModelConfig tiny_model() {
  ModelConfig c;
  c.vocab_size = 8;
  c.d_model = 8;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.d_ff = 16;
  c.max_seq_len = 16;
  c.audio.n_mels = 4;
  c.audio.d_model = 4;
  c.audio.n_layers = 1;
  c.audio.n_heads = 1;
  c.audio.projector_stack = 2;
  return c;
}

struct Fixture {
  Fixture(int* argc, char*** argv)
      : world(argc, argv),
        groups(comm::make_process_groups(world, comm::ParallelDims::resolve(0, 1, 1), false)),
        model(tiny_model(), groups.tp) {}
  comm::World world;
  comm::ProcessGroups groups;
  model::Lalm model;
};
Fixture* fixture = nullptr;

}  // namespace

// MPI_Finalize (when the fixture is destroyed at exit) and the MCA components it unloads
// leave allocations behind as well: no leak check at exit; every input is still checked.
extern "C" const char* __lsan_default_options() { return "leak_check_at_exit=0"; }

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  fixture = cord::fuzz::start_fixture<Fixture>("fuzz_weights", argc, argv);
  // CORD_FUZZ_WRITE_SEED=PATH: saves the tiny model's weights as PATH and exits.
  if (const char* seed = std::getenv("CORD_FUZZ_WRITE_SEED")) {
    ckpt::save_weights(seed, fixture->model, fixture->groups,
                       ckpt::WeightsMeta{"text", 5, "[train]\nstage = \"text\"\n", {"<pad>", "<bos>", "<eos>", "a"}});
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = cord::fuzz::write_input("fuzz_weights", data, size);
  try {
    (void)cord::ckpt::load_weights(path, fixture->model);
  } catch (const cord::Error& e) {  // UsageError included: a refused file
    cord::fuzz::abort_if_expected_valid("fuzz_weights", e.what());
  }
  cord::fuzz::abort_if_hdf5_objects_open("fuzz_weights");
  return 0;
}
