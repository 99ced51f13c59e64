// The weights file: written under one tensor-parallel layout and read under another
// (tp = 2 <-> tp = 1 under mpiexec -n 2; any tp under -n 1), the architecture and
// vocabulary checks, and the atomic write (no file at the final path after a failure).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "cord/ckpt/model_weights.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "model_fixtures.hpp"
#include "mpi_test_world.hpp"

namespace cord::ckpt {
namespace {

using testing::world;

// A path every rank agrees on (rank 0's pid).
std::string shared_path(const std::string& name) {
  at::Tensor pid = torch::tensor({static_cast<int64_t>(getpid())}, torch::kInt64);
  comm::ProcessGroups groups = comm::make_process_groups(world(), comm::ParallelDims::resolve(0, 1, world().size()), false);
  comm::broadcast(groups.world, pid, 0);
  return "/tmp/cord_weights_test_" + std::to_string(pid.item<int64_t>()) + "_" + name + ".h5";
}

comm::ProcessGroups groups_with_tp(int tp) {
  return comm::make_process_groups(world(), comm::ParallelDims::resolve(0, tp, world().size()), false);
}

const std::vector<std::string> kVocab{"<pad>", "<bos>", "<eos>", "a", "b"};

// Every parameter of `a` (a tp = 1 model) equals the global tensor of `b`'s shards.
void expect_same_global(model::Lalm& a, model::Lalm& b) {
  const auto full = model::sharded_parameters(*a, a->tp_group());
  const auto shards = model::sharded_parameters(*b, b->tp_group());
  ASSERT_EQ(full.size(), shards.size());
  for (size_t i = 0; i < full.size(); ++i) {
    ASSERT_EQ(full[i].name, shards[i].name);
    at::Tensor expected = full[i].param;
    if (shards[i].split_dim >= 0) {
      expected = expected.narrow(shards[i].split_dim, shards[i].offset, shards[i].param.size(shards[i].split_dim));
    }
    EXPECT_TRUE(torch::equal(expected, shards[i].param)) << shards[i].name;
  }
}

TEST(Weights, SavedUnderOneTensorParallelLayoutLoadUnderAnother) {
  const int size = world().size();
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string path = shared_path("reshard");
  // Written with tp = world size: every rank holds shards.
  const comm::ProcessGroups wide = groups_with_tp(size);
  model::Lalm writer(config, wide.tp);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : writer->parameters()) p.add_(0.5);  // not the initial values
  }
  save_weights(path, writer, wide, WeightsMeta{"text", 12, "# config\n", kVocab});

  // Read with tp = 1 (a fresh model with other initial values): equals the global tensors.
  ModelConfig other = config;
  other.init_seed = 99;
  model::Lalm reader(other, testing::solo_group());
  const WeightsHeader header = load_weights(path, reader);
  EXPECT_EQ(header.stage, "text");
  EXPECT_EQ(header.step, 12);
  EXPECT_EQ(header.vocab, kVocab);
  expect_same_global(reader, writer);

  // And back: tp = 1 writes, tp = world size reads.
  const std::string back = shared_path("reshard_back");
  const comm::ProcessGroups narrow = groups_with_tp(1);
  save_weights(back, reader, narrow, WeightsMeta{"align", 3, "", kVocab});
  model::Lalm reread(other, wide.tp);
  load_weights(back, reread);
  expect_same_global(reader, reread);
  comm::barrier(wide.world);
  if (world().rank() == 0) {
    std::remove(path.c_str());
    std::remove(back.c_str());
  }
}

TEST(Weights, AnotherArchitectureIsRejectedNamingEveryField) {
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string path = shared_path("arch");
  const comm::ProcessGroups groups = groups_with_tp(1);
  model::Lalm writer(config, groups.tp);
  save_weights(path, writer, groups, WeightsMeta{"text", 1, "", kVocab});
  ModelConfig wider = config;
  wider.d_model = 64;
  wider.audio.n_layers = 2;
  wider.init_seed = 5;  // initialisation fields are not architecture
  wider.max_seq_len = 2 * config.max_seq_len;  // nor is a capacity
  try {
    read_weights_header(path, wider);
    FAIL() << "expected an architecture mismatch";
  } catch (const UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("model.d_model: file 32, config 64"), std::string::npos) << message;
    EXPECT_NE(message.find("model.audio.n_layers: file 1, config 2"), std::string::npos) << message;
    EXPECT_EQ(message.find("init_seed"), std::string::npos) << message;
    EXPECT_EQ(message.find("max_seq_len"), std::string::npos) << message;
  }
  ModelConfig longer = config;
  longer.max_seq_len = 2 * config.max_seq_len;
  EXPECT_NO_THROW(read_weights_header(path, longer));
  comm::barrier(groups.world);
  if (world().rank() == 0) std::remove(path.c_str());
}

TEST(Weights, VocabularyMismatchNamesTheFirstDifferentToken) {
  WeightsHeader header;
  header.path = "w.h5";
  header.vocab = kVocab;
  EXPECT_NO_THROW(check_same_vocab(header, kVocab, "c.h5"));
  std::vector<std::string> other = kVocab;
  other[3] = "x";
  try {
    check_same_vocab(header, other, "c.h5");
    FAIL() << "expected a vocabulary mismatch";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("token 3 is 'x' in the corpus, 'a' in the weights"), std::string::npos)
        << e.what();
  }
  other = kVocab;
  other.push_back("c");
  EXPECT_THROW(check_same_vocab(header, other, "c.h5"), UsageError);
}

TEST(Weights, MissingOrForeignFilesAreNamed) {
  const ModelConfig config = cord::testing::tiny_model_config();
  try {
    read_weights_header("/nonexistent/model.h5", config);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.h5"), std::string::npos);
  }
}

TEST(Weights, AFailedSaveLeavesNoFileAndTellsEveryRank) {
  const comm::ProcessGroups groups = groups_with_tp(1);
  model::Lalm model(cord::testing::tiny_model_config(), groups.tp);
  EXPECT_THROW(save_weights("/nonexistent-folder/model.h5", model, groups, WeightsMeta{"text", 1, "", kVocab}), Error);
  EXPECT_NE(access("/nonexistent-folder/model.h5", F_OK), 0);
}

}  // namespace
}  // namespace cord::ckpt
