// The corpus loader under a real rank layout (dp x tp over mpiexec): tensor-parallel peers
// get the same batch, the dp shards of a step form the global batch of a single-rank
// loader, and the corpus written collectively by all ranks reads back whole.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "../unit/data_test_util.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/data/loader.hpp"
#include "mpi_test_world.hpp"

namespace cord::data {
namespace {

std::string join(const std::vector<std::int64_t>& rows) {
  std::ostringstream out;
  for (const std::int64_t r : rows) out << r << ",";
  return out.str();
}

TEST(LoaderLayout, TensorParallelPeersShareBatchesAndDpShardsFormTheGlobalBatch) {
  const comm::World& world = cord::testing::world();
  const int tp = world.size() % 2 == 0 ? 2 : 1;
  const comm::ParallelDims dims = comm::ParallelDims::resolve(0, tp, world.size());
  const comm::ProcessGroup group = comm::ProcessGroup::world(world);

  // Every rank writes its own block of a 96-item corpus; rank 0 picks the folder.
  std::string path;
  std::unique_ptr<testing::TempDir> dir;
  if (world.rank() == 0) {
    dir = std::make_unique<testing::TempDir>();
    path = dir->file("corpus.h5");
  }
  {
    std::vector<char> buffer(4096, '\0');
    std::copy(path.begin(), path.end(), buffer.begin());
    MPI_Bcast(buffer.data(), static_cast<int>(buffer.size()), MPI_CHAR, 0, world.comm());
    path = buffer.data();
  }
  CorpusConfig config = testing::small_config(96);
  config.validation_fraction = 0;
  config.test_fraction = 0;
  const std::int64_t begin = 96 * world.rank() / world.size(), end = 96 * (world.rank() + 1) / world.size();
  write_corpus(path, CorpusHeader{"synth", 1, "", {}}, Tokenizer::from_generators(),
               testing::fake_records(config, begin, end), world.comm());
  const CorpusReader corpus(path);
  ASSERT_EQ(corpus.size(), 96);
  for (std::int64_t i = 0; i < 96; ++i) ASSERT_EQ(corpus.index(i), i);

  LoaderOptions options;
  options.global_batch = 12;
  options.seed = 3;
  CorpusLoader loader(corpus, shard_options(options, dims, world.rank()));
  const CorpusLoader single(corpus, options);
  for (std::int64_t step = 0; step < 10; ++step) {  // crosses into the second epoch (8 batches each)
    const Batch batch = loader.next();
    const std::vector<std::string> all = comm::gather_strings(group, join(batch.items), 0);
    if (world.rank() != 0) continue;
    std::string global;
    for (int dp_rank = 0; dp_rank < dims.dp(); ++dp_rank) {
      for (int tp_rank = 0; tp_rank < dims.tp(); ++tp_rank) {
        const int rank = dims.world_rank_of({dp_rank, tp_rank});
        EXPECT_EQ(all[static_cast<std::size_t>(rank)], all[static_cast<std::size_t>(dims.world_rank_of({dp_rank, 0}))])
            << "tp peers of dp rank " << dp_rank << " differ at step " << step;
      }
      global += all[static_cast<std::size_t>(dims.world_rank_of({dp_rank, 0}))];
    }
    EXPECT_EQ(global, join(single.rows_of(step / single.batches_per_epoch(), step % single.batches_per_epoch())))
        << "step " << step;
  }
  MPI_Barrier(world.comm());  // the folder goes when rank 0 leaves; the others are done reading
}

}  // namespace
}  // namespace cord::data
