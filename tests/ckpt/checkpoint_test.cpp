// Training checkpoints (ckpt/checkpoint.hpp): the layout-independent checksum, a checkpoint
// written collectively under tp = world size and read under tp = 1 and back (tp = 2 <-> 1
// under mpiexec -n 2, tp = 4 <-> 1 under -n 4), commit and retention, and what resume does
// with damaged, uncommitted or foreign files; asynchronous saves (async_checkpoint.hpp) and
// the HDF5 writes in pieces that let them share the library with the training thread.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <thread>

#include "cord/ckpt/async_checkpoint.hpp"
#include "cord/ckpt/checkpoint.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "cord/core/files.hpp"
#include "cord/h5/h5.hpp"
#include "model_fixtures.hpp"
#include "mpi_test_world.hpp"

namespace cord::ckpt {
namespace {

using testing::world;

comm::ProcessGroups groups_with_tp(int tp) {
  return comm::make_process_groups(world(), comm::ParallelDims::resolve(0, tp, world().size()), false);
}

// A fresh folder every rank agrees on (rank 0's pid).
std::string shared_folder(const std::string& name) {
  const comm::ProcessGroups groups = groups_with_tp(1);
  const std::string folder = "/tmp/cord_ckpt_test_" + comm::broadcast_string(groups.world, std::to_string(getpid()), 0) +
                             "_" + name;
  if (world().rank() == 0) {
    std::system(("rm -rf " + folder).c_str());
    make_directories(folder);
  }
  comm::barrier(groups.world);
  return folder;
}

const std::vector<std::string> kVocab{"<pad>", "<bos>", "<eos>", "a", "b"};

// The model's parameters as checkpoint tensors: the tp ranks of dp rank 0 write shards,
// replicated tensors are written by tp rank 0.
std::vector<ShardedTensor> tensors_of(model::Lalm& model, const comm::ProcessGroups& groups) {
  std::vector<ShardedTensor> tensors;
  for (const model::ParamShard& shard : model::sharded_parameters(*model, groups.tp)) {
    const bool writes = groups.dp.rank() == 0 && (shard.split_dim >= 0 || groups.tp.rank() == 0);
    tensors.push_back({"params/" + shard.name, shard.param, shard.global_shape, shard.split_dim, shard.offset, writes});
  }
  return tensors;
}

SaveRequest request_for(const std::string& folder, int64_t step, const ModelConfig& config) {
  SaveRequest request;
  request.directory = folder;
  request.progress.stage = "text";
  request.progress.step = step;
  request.progress.optimizer_steps = step;
  request.progress.loader_epoch = 1;
  request.progress.loader_next_batch = step % 5;
  request.progress.loader_seed = 9;
  request.progress.run_id = "test";
  request.config_toml = "# test\n";
  request.vocab = kVocab;
  request.model = config;
  request.device = "cpu";
  return request;
}

void perturb(model::Lalm& model, double amount) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.add_(amount);
}

// Every parameter of `full` (tp = 1) equals the global tensor that `sharded`'s shards form.
void expect_same_global(model::Lalm& full, model::Lalm& sharded) {
  const auto a = model::sharded_parameters(*full, full->tp_group());
  const auto b = model::sharded_parameters(*sharded, sharded->tp_group());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    at::Tensor expected = a[i].param;
    if (b[i].split_dim >= 0) expected = expected.narrow(b[i].split_dim, b[i].offset, b[i].param.size(b[i].split_dim));
    EXPECT_TRUE(torch::equal(expected, b[i].param)) << b[i].name;
  }
}

// The save's writeback helper only moves disk work earlier: the file holds exactly what was
// written while it ran, and a path it cannot open makes it a no-op.
TEST(Files, BackgroundWritebackLeavesTheFileAsWritten) {
  const std::string path = "/tmp/cord_writeback_test_" + std::to_string(getpid()) + "_" + std::to_string(world().rank());
  std::string expected;
  {
    std::ofstream out(path, std::ios::binary);
    const BackgroundWriteback writeback(path, std::chrono::microseconds(200));
    for (int chunk = 0; chunk < 64; ++chunk) {
      const std::string bytes(64 * 1024, static_cast<char>('a' + chunk % 26));
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      out.flush();  // into the page cache, where the helper finds it
      expected += bytes;
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  }
  std::ifstream in(path, std::ios::binary);
  const std::string read((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(read.size(), expected.size());
  EXPECT_TRUE(read == expected);
  std::remove(path.c_str());
  EXPECT_NO_THROW({ const BackgroundWriteback none(path + ".missing"); });
}

TEST(Checkpoint, ChecksumOfBlocksAddsUpToTheWholeTensor) {
  const at::Tensor whole = torch::arange(24, torch::kFloat).reshape({4, 6}).mul(0.37);
  const std::vector<int64_t> shape{4, 6};
  const uint64_t total = block_checksum(whole, shape, -1, 0);
  for (int dim : {0, 1}) {
    const int64_t half = whole.size(dim) / 2;
    const uint64_t first = block_checksum(whole.narrow(dim, 0, half).contiguous(), shape, dim, 0);
    const uint64_t second = block_checksum(whole.narrow(dim, half, half).contiguous(), shape, dim, half);
    EXPECT_EQ(first + second, total) << "split along " << dim;
  }
  at::Tensor changed = whole.clone();
  changed[2][3] = 1.0f;
  EXPECT_NE(block_checksum(changed, shape, -1, 0), total);
  // Moving a value to another place changes it too (the index is part of the hash).
  EXPECT_NE(block_checksum(whole.flip(1).contiguous(), shape, -1, 0), total);
}

// The values the formula in docs/checkpoints.md gives, computed independently (Python, from the formula
// alone): a change to the checksum needs a new checkpoint format version.
TEST(Checkpoint, ChecksumMatchesTheDocumentedFormula) {
  EXPECT_EQ(block_checksum(torch::tensor({1.0f, -2.5f, 3.25f}), {3}, -1, 0), 0x1d232d963ULL);
  EXPECT_EQ(block_checksum(torch::tensor({int64_t{7}, int64_t{-1}}), {2}, -1, 0), 0xcceca89cULL);
  EXPECT_EQ(block_checksum(torch::tensor({0, 255, 17}, torch::kUInt8), {3}, -1, 0), 0x49d881baULL);
}

// Global indices past 2^32 (tensors of more than 4G words): a block that crosses the
// boundary sums as its two halves do.
TEST(Checkpoint, ChecksumOfABlockAcrossTheFourGigaWordBoundaryAddsUp) {
  const at::Tensor block = torch::arange(6, torch::kFloat).add(0.5);
  const std::vector<int64_t> shape{int64_t{1} << 33};
  const int64_t offset = (int64_t{1} << 32) - 3;
  const uint64_t across = block_checksum(block, shape, 0, offset);
  const uint64_t below = block_checksum(block.narrow(0, 0, 3).contiguous(), shape, 0, offset);
  const uint64_t above = block_checksum(block.narrow(0, 3, 3).contiguous(), shape, 0, offset + 3);
  EXPECT_EQ(across, below + above);
  // And the high half of the index matters: the same words 2^32 further differ.
  EXPECT_NE(block_checksum(block, shape, 0, 1), block_checksum(block, shape, 0, (int64_t{1} << 32) + 1));
}

TEST(Checkpoint, WrittenUnderOneTensorParallelLayoutLoadsUnderAnother) {
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string folder = shared_folder("reshard");
  const comm::ProcessGroups wide = groups_with_tp(world().size());
  model::Lalm writer(config, wide.tp);
  perturb(writer, 0.25);
  const SavedCheckpoint saved = save_checkpoint(request_for(folder, 7, config), tensors_of(writer, wide), wide, {});
  EXPECT_EQ(saved.path, folder + "/step-00000007.h5");
  EXPECT_GT(saved.bytes, 0);

  if (world().rank() == 0) {
    const CheckpointInfo info = inspect_checkpoint(saved.path, true);
    EXPECT_TRUE(info.verified) << info.problem;
    EXPECT_EQ(info.header.progress.step, 7);
    EXPECT_EQ(info.header.tp, world().size());
    std::ifstream marker(folder + "/latest");
    std::string name;
    marker >> name;
    EXPECT_EQ(name, "step-00000007.h5");
  }

  // tp = 1, every rank a dp rank: each reads the whole tensors.
  const comm::ProcessGroups narrow = groups_with_tp(1);
  ModelConfig other = config;
  other.init_seed = 99;
  model::Lalm reader(other, narrow.tp);
  const Progress progress = load_checkpoint(saved.path, tensors_of(reader, narrow), narrow, other, "text");
  EXPECT_EQ(progress.step, 7);
  EXPECT_EQ(progress.loader_next_batch, 2);
  EXPECT_EQ(progress.loader_seed, 9);
  expect_same_global(reader, writer);

  // And back: tp = 1 writes (dp rank 0 only), tp = world size reads.
  perturb(reader, -0.5);
  const SavedCheckpoint back = save_checkpoint(request_for(folder, 8, config), tensors_of(reader, narrow), narrow, {});
  model::Lalm reread(other, wide.tp);
  load_checkpoint(back.path, tensors_of(reread, wide), wide, config, "text");
  expect_same_global(reader, reread);
}

TEST(Checkpoint, RetentionKeepsTheLastAndTheMilestones) {
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string folder = shared_folder("retention");
  const comm::ProcessGroups groups = groups_with_tp(1);
  model::Lalm model(config, groups.tp);
  for (int64_t step = 1; step <= 9; ++step) {
    save_checkpoint(request_for(folder, step, config), tensors_of(model, groups), groups, Retention{2, 4});
  }
  if (world().rank() == 0) {
    for (int64_t step = 1; step <= 9; ++step) {
      const bool kept = step == 4 || step == 8 || step == 9;
      EXPECT_EQ(access((folder + "/" + checkpoint_file_name(step)).c_str(), F_OK) == 0, kept) << "step " << step;
    }
    const ResumeChoice choice = choose_checkpoint("auto", folder);
    EXPECT_EQ(choice.path, folder + "/step-00000009.h5");
  }
  comm::barrier(groups.world);
}

// Rank 0 only: damaged files are passed over, uncommitted ones ignored.
TEST(Checkpoint, ResumeAutoPassesOverDamagedAndUncommittedFiles) {
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string folder = shared_folder("damaged");
  const comm::ProcessGroups groups = groups_with_tp(1);
  model::Lalm model(config, groups.tp);
  for (int64_t step : {2, 4, 6}) {
    save_checkpoint(request_for(folder, step, config), tensors_of(model, groups), groups, Retention{5, 0});
  }
  if (world().rank() == 0) {
    const std::string step6 = folder + "/step-00000006.h5", step4 = folder + "/step-00000004.h5";
    // Flip bytes in the middle of step 6's data: its checksum fails, step 4 is used.
    {
      const CheckpointInfo before = inspect_checkpoint(step6, true);
      ASSERT_TRUE(before.verified) << before.problem;
      std::fstream file(step6, std::ios::in | std::ios::out | std::ios::binary);
      file.seekg(0, std::ios::end);
      const std::streamoff size = file.tellg();
      // The parameter data sits between the metadata at the start and the end of the file.
      for (std::streamoff at = size / 3; at < size / 3 + 64; ++at) {
        file.seekg(at);
        char byte = 0;
        file.read(&byte, 1);
        file.seekp(at);
        byte = static_cast<char>(byte ^ 0x5a);
        file.write(&byte, 1);
      }
    }
    const CheckpointInfo damaged = inspect_checkpoint(step6, true);
    EXPECT_FALSE(damaged.verified);
    EXPECT_FALSE(damaged.problem.empty());
    ResumeChoice choice = choose_checkpoint("auto", folder);
    EXPECT_EQ(choice.path, step4);
    ASSERT_EQ(choice.rejected.size(), 1u);
    EXPECT_NE(choice.rejected[0].find(step6), std::string::npos);
    EXPECT_THROW(choose_checkpoint(step6, folder), UsageError);

    // Truncated: unreadable, passed over the same way.
    EXPECT_EQ(truncate(step4.c_str(), 2000), 0);
    choice = choose_checkpoint("auto", folder);
    EXPECT_EQ(choice.path, folder + "/step-00000002.h5");
    EXPECT_EQ(choice.rejected.size(), 2u);

    // A marker naming a missing file: reported, the previous used.
    write_file_atomically(folder + "/latest", "step-00000010.h5\n");
    choice = choose_checkpoint("auto", folder);
    EXPECT_EQ(choice.path, folder + "/step-00000002.h5");
    EXPECT_NE(choice.rejected[0].find("named by the commit marker but missing"), std::string::npos);

    // A file newer than the marker is not committed.
    write_file_atomically(folder + "/latest", "step-00000004.h5\n");
    choice = choose_checkpoint("auto", folder);
    ASSERT_EQ(choice.uncommitted.size(), 1u);
    EXPECT_EQ(choice.uncommitted[0], step6);

    // No marker: nothing is committed; start from the beginning.
    std::remove((folder + "/latest").c_str());
    choice = choose_checkpoint("auto", folder);
    EXPECT_TRUE(choice.path.empty());
    EXPECT_EQ(choice.uncommitted.size(), 3u);

    // Every committed checkpoint damaged: a clear error, not a silent fresh start.
    write_file_atomically(folder + "/latest", "step-00000004.h5\n");
    EXPECT_EQ(truncate((folder + "/step-00000002.h5").c_str(), 100), 0);
    try {
      choose_checkpoint("auto", folder);
      FAIL() << "expected an error";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("no checkpoint in " + folder + " verifies"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(choose_checkpoint("none", folder).path.empty());
  }
  comm::barrier(groups.world);
}

TEST(Checkpoint, AnotherArchitectureOrStageIsRejected) {
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string folder = shared_folder("arch");
  const comm::ProcessGroups groups = groups_with_tp(1);
  model::Lalm model(config, groups.tp);
  const SavedCheckpoint saved = save_checkpoint(request_for(folder, 3, config), tensors_of(model, groups), groups, {});
  try {
    load_checkpoint(saved.path, tensors_of(model, groups), groups, config, "align");
    FAIL() << "expected a stage mismatch";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to stage text"), std::string::npos) << e.what();
  }
  ModelConfig wider = config;
  wider.d_model = 64;
  try {
    load_checkpoint(saved.path, tensors_of(model, groups), groups, wider, "text");
    FAIL() << "expected an architecture mismatch";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("model.d_model: file 32, config 64"), std::string::npos) << e.what();
  }
}

// Replaces dataset `name` of the HDF5 file at `path` by `values` (1-D), as a damaged or
// hand-edited file would hold; rank 0 edits, every rank returns after it.
template <typename T>
void replace_dataset(const std::string& path, const std::string& name, const std::vector<T>& values, hid_t type) {
  if (world().rank() == 0) {
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(file, 0) << path;
    ASSERT_GE(H5Ldelete(file, name.c_str(), H5P_DEFAULT), 0) << name;
    const hsize_t count = values.size();
    const hid_t space = H5Screate_simple(1, &count, nullptr);
    const hid_t dataset = H5Dcreate2(file, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(H5Dwrite(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    H5Dclose(dataset);
    H5Sclose(space);
    H5Fclose(file);
  }
  comm::barrier(groups_with_tp(1).world);
}

// Seen while writing fuzz_checkpoint: load_checkpoint reads the loader position and the
// generator state without trusting their sizes, and names the dataset when they are wrong.
TEST(Checkpoint, ADamagedLoaderOrGeneratorStateIsRefusedNamingTheDataset) {
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string folder = shared_folder("damaged_state");
  const comm::ProcessGroups groups = groups_with_tp(1);
  model::Lalm model(config, groups.tp);
  const SavedCheckpoint saved = save_checkpoint(request_for(folder, 1, config), tensors_of(model, groups), groups, {});
  const std::string copy = folder + "/loader.h5", other = folder + "/rng.h5";
  if (world().rank() == 0) {
    std::system(("cp " + saved.path + " " + copy + " && cp " + saved.path + " " + other).c_str());
  }
  replace_dataset<int64_t>(copy, "/loader", {1, 2}, H5T_NATIVE_INT64);
  try {
    load_checkpoint(copy, tensors_of(model, groups), groups, config, "text");
    FAIL() << "expected an error about /loader";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(copy + ": dataset /loader holds 2 values, not 3"), std::string::npos)
        << e.what();
  }
  // One byte per rank: a row of a generator-state dataset that torch refuses.
  replace_dataset<uint8_t>(other, "/rng/cpu", std::vector<uint8_t>(static_cast<size_t>(world().size()), 7),
                           H5T_NATIVE_UINT8);
  try {
    load_checkpoint(other, tensors_of(model, groups), groups, config, "text");
    FAIL() << "expected an error about /rng/cpu";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(other + ": dataset /rng/cpu is not a generator state"), std::string::npos)
        << e.what();
  }
  comm::barrier(groups.world);
}

TEST(Checkpoint, AnUnwritableFolderFailsOnEveryRankAndKeepsTheCommittedCheckpoint) {
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string folder = shared_folder("unwritable");
  const comm::ProcessGroups groups = groups_with_tp(1);
  model::Lalm model(config, groups.tp);
  save_checkpoint(request_for(folder, 1, config), tensors_of(model, groups), groups, {});
  // A regular file where the folder should be: every rank gets the error, naming it.
  const std::string blocked = folder + "/blocked";
  if (world().rank() == 0) std::ofstream(blocked) << "x";
  comm::barrier(groups.world);
  try {
    save_checkpoint(request_for(blocked, 2, config), tensors_of(model, groups), groups, {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot save checkpoint " + blocked + "/step-00000002.h5"), std::string::npos)
        << e.what();
  }
  if (world().rank() == 0) {
    EXPECT_TRUE(inspect_checkpoint(folder + "/step-00000001.h5", true).verified);
  }
  comm::barrier(groups.world);
}

// A block larger than h5::File::kWritePieceBytes is written in pieces (each rank the same
// number of collective calls, whatever its share): the file holds exactly the blocks, split
// along rows (pieces cut through a rank's block) and along columns.
TEST(H5, LargeBlocksWrittenInPiecesReassemble) {
  const std::string folder = shared_folder("pieces");
  const comm::ProcessGroups groups = groups_with_tp(1);
  const uint64_t rows = 2048, columns = 2304;  // 18.9 MB of float32: two pieces of 1820 rows
  ASSERT_GT(rows * columns * 4, h5::File::kWritePieceBytes);
  const auto size = static_cast<uint64_t>(world().size());
  const auto rank = static_cast<uint64_t>(world().rank());
  const std::string path = folder + "/pieces.h5";
  {
    h5::File file = h5::File::create(path, size > 1 ? groups.world.mpi_comm() : MPI_COMM_NULL);
    // value = global element index (exact in float32 below 2^24)
    auto block = [&](uint64_t r0, uint64_t nr, uint64_t c0, uint64_t nc) {
      std::vector<float> values(nr * nc);
      for (uint64_t r = 0; r < nr; ++r) {
        for (uint64_t c = 0; c < nc; ++c) values[r * nc + c] = static_cast<float>((r0 + r) * columns + c0 + c);
      }
      return values;
    };
    file.create_dataset("/by_rows", h5::Dtype::kFloat32, {rows, columns});
    file.create_dataset("/by_columns", h5::Dtype::kFloat32, {rows, columns});
    const uint64_t my_rows = rows / size, my_columns = columns / size;
    const std::vector<float> row_block = block(rank * my_rows, my_rows, 0, columns);
    file.write_block("/by_rows", {rank * my_rows, 0}, {my_rows, columns}, row_block.data(), h5::Dtype::kFloat32);
    const std::vector<float> column_block = block(0, rows, rank * my_columns, my_columns);
    file.write_block("/by_columns", {0, rank * my_columns}, {rows, my_columns}, column_block.data(),
                     h5::Dtype::kFloat32);
    file.close();
  }
  comm::barrier(groups.world);
  if (world().rank() == 0) {
    const h5::File file = h5::File::open_read_only(path);
    for (const char* dataset : {"/by_rows", "/by_columns"}) {
      const std::vector<float> values = file.read_all<float>(dataset);
      ASSERT_EQ(values.size(), rows * columns);
      uint64_t wrong = 0;
      for (uint64_t i = 0; i < values.size(); ++i) wrong += values[i] != static_cast<float>(i) ? 1 : 0;
      EXPECT_EQ(wrong, 0u) << dataset;
    }
  }
  comm::barrier(groups.world);
}

// The asynchronous writer saves the state at start(), not what the training makes of the
// tensors once wait_until_copied() has returned, and the file equals a synchronous save of that state tensor for
// tensor. Meanwhile this thread reads another HDF5 file, as the training reads its corpus.
TEST(AsyncCheckpoint, WritesTheStateAtStartWhileTrainingChangesIt) {
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string folder = shared_folder("async");
  const comm::ProcessGroups groups = groups_with_tp(world().size());
  model::Lalm model(config, groups.tp);
  perturb(model, 0.25);
  const SavedCheckpoint sync = save_checkpoint(request_for(folder + "/sync", 3, config), tensors_of(model, groups),
                                               groups, {});
  AsyncCheckpointer writer(groups);
  EXPECT_FALSE(writer.in_flight());
  writer.start(request_for(folder + "/async", 3, config), tensors_of(model, groups), {}, {});
  EXPECT_TRUE(writer.in_flight());
  writer.wait_until_copied();  // as the training does before its next optimizer step
  perturb(model, 1.0);         // that step, while the writer writes
  int reads = 0;
  while (!writer.finished()) {
    EXPECT_TRUE(inspect_checkpoint(sync.path, true).verified);  // HDF5 from this thread too
    ++reads;
  }
  const SavedCheckpoint saved = writer.wait();
  EXPECT_FALSE(writer.in_flight());
  EXPECT_EQ(saved.path, folder + "/async/step-00000003.h5");
  EXPECT_GT(writer.host_bytes(), 0);
  if (world().rank() == 0) {
    const CheckpointInfo a = inspect_checkpoint(sync.path, true);
    const CheckpointInfo b = inspect_checkpoint(saved.path, true);
    EXPECT_TRUE(b.verified) << b.problem;
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i) {
      EXPECT_EQ(a.tensors[i].key, b.tensors[i].key);
      EXPECT_EQ(a.tensors[i].checksum, b.tensors[i].checksum) << a.tensors[i].key;
    }
    std::ifstream marker(folder + "/async/latest");
    std::string name;
    marker >> name;
    EXPECT_EQ(name, "step-00000003.h5");
  }
  model::Lalm reference(config, groups.tp);
  perturb(reference, 0.25);
  ModelConfig other = config;
  other.init_seed = 99;
  model::Lalm reader(other, groups.tp);
  load_checkpoint(saved.path, tensors_of(reader, groups), groups, config, "text");
  const auto loaded = reader->named_parameters();
  for (const auto& p : reference->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), loaded[p.key()])) << p.key();
  }
  std::printf("rank %d: %d checkpoint reads while the writer ran\n", world().rank(), reads);
}

// A save that fails on the writer thread is thrown by wait() on every rank, and the
// committed checkpoint stays; the next save works.
TEST(AsyncCheckpoint, AFailedWriteIsThrownByWaitOnEveryRank) {
  const ModelConfig config = cord::testing::tiny_model_config();
  const std::string folder = shared_folder("async_failure");
  const comm::ProcessGroups groups = groups_with_tp(1);
  model::Lalm model(config, groups.tp);
  AsyncCheckpointer writer(groups);
  writer.start(request_for(folder, 1, config), tensors_of(model, groups), {}, {});
  writer.wait();
  const std::string blocked = folder + "/blocked";
  if (world().rank() == 0) std::ofstream(blocked) << "x";
  comm::barrier(groups.world);
  writer.start(request_for(blocked, 2, config), tensors_of(model, groups), {}, {});
  try {
    writer.wait();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot save checkpoint " + blocked + "/step-00000002.h5"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(writer.in_flight());
  if (world().rank() == 0) {
    EXPECT_TRUE(inspect_checkpoint(folder + "/step-00000001.h5", true).verified);
  }
  writer.start(request_for(folder, 3, config), tensors_of(model, groups), {}, {});
  EXPECT_EQ(writer.wait().path, folder + "/step-00000003.h5");
}

}  // namespace
}  // namespace cord::ckpt
