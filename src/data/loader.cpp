#include "cord/data/loader.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>

#include "cord/core/error.hpp"
#include "cord/data/audio.hpp"
#include "cord/data/rng.hpp"

namespace cord::data {

LoaderOptions shard_options(LoaderOptions options, const comm::ParallelDims& dims, int world_rank) {
  options.dp_rank = dims.coords_of(world_rank).dp_rank;
  options.dp_size = dims.dp();
  return options;
}

CorpusLoader::CorpusLoader(const CorpusReader& corpus, const LoaderOptions& options)
    : corpus_(corpus), options_(options) {
  if (options.dp_size <= 0 || options.dp_rank < 0 || options.dp_rank >= options.dp_size) {
    throw UsageError("loader: dp_rank " + std::to_string(options.dp_rank) + " outside dp_size " +
                     std::to_string(options.dp_size));
  }
  if (options.global_batch <= 0 || options.global_batch % options.dp_size != 0) {
    throw UsageError("loader: global batch " + std::to_string(options.global_batch) + " is not divisible by dp " +
                     std::to_string(options.dp_size));
  }
  const auto wanted = [&](Family family) {
    return options.families.empty() ||
           std::find(options.families.begin(), options.families.end(), family) != options.families.end();
  };
  for (std::int64_t i = 0; i < corpus.size(); ++i) {
    if (corpus.split(i) == options.split && wanted(corpus.family(i))) split_rows_.push_back(i);
  }
  if (static_cast<std::int64_t>(split_rows_.size()) < options.global_batch) {
    std::string families;
    for (const Family family : options.families) families += (families.empty() ? "" : ",") + std::string(family_name(family));
    throw UsageError("loader: split " + std::string(split_name(options.split)) + " of " + corpus.path() +
                     (families.empty() ? "" : " restricted to families " + families) + " has " +
                     std::to_string(split_rows_.size()) + " items, fewer than one global batch of " +
                     std::to_string(options.global_batch));
  }
  if (options.augment.any() && corpus.feature_kind() != "cord") {
    throw UsageError("train.augment: " + corpus.path() + " holds " + corpus.feature_kind() +
                     " features (feature_kind); only cord's features are augmented (data/augment.hpp): set every "
                     "train.augment option to 0 or use a corpus with corpus.features = cord");
  }
  state_.seed = options.seed;
}

std::int64_t CorpusLoader::batches_per_epoch() const {
  return static_cast<std::int64_t>(split_rows_.size()) / options_.global_batch;
}

const std::vector<std::int64_t>& CorpusLoader::epoch_order(std::int64_t epoch) const {
  if (cached_epoch_ == epoch) return cached_order_;
  std::vector<std::int64_t> order = split_rows_;
  if (options_.shuffle) {
    Rng rng(derive_seed(options_.seed, Stream::kShuffle, static_cast<std::uint64_t>(epoch)));
    rng.shuffle(order);
  }
  order.resize(static_cast<std::size_t>(batches_per_epoch() * options_.global_batch));  // drop the incomplete batch
  if (options_.bucket_window > 0) {
    const std::int64_t window_items = options_.bucket_window * options_.global_batch;
    for (std::int64_t begin = 0, w = 0; begin < static_cast<std::int64_t>(order.size()); begin += window_items, ++w) {
      const std::int64_t end = std::min<std::int64_t>(begin + window_items, static_cast<std::int64_t>(order.size()));
      // Stable sort by length: ties keep the shuffled order, so the result is deterministic.
      std::stable_sort(order.begin() + begin, order.begin() + end,
                       [this](std::int64_t a, std::int64_t b) { return corpus_.frames(a) < corpus_.frames(b); });
      std::vector<std::int64_t> batch_ids((end - begin) / options_.global_batch);
      for (std::size_t k = 0; k < batch_ids.size(); ++k) batch_ids[k] = static_cast<std::int64_t>(k);
      Rng rng(derive_seed(options_.seed, Stream::kBuckets,
                          static_cast<std::uint64_t>(epoch) * 1000003ULL + static_cast<std::uint64_t>(w)));
      rng.shuffle(batch_ids);
      std::vector<std::int64_t> window(order.begin() + begin, order.begin() + end);
      for (std::size_t k = 0; k < batch_ids.size(); ++k) {
        std::copy_n(window.begin() + batch_ids[k] * options_.global_batch, options_.global_batch,
                    order.begin() + begin + static_cast<std::int64_t>(k) * options_.global_batch);
      }
    }
  }
  cached_epoch_ = epoch;
  cached_order_ = std::move(order);
  return cached_order_;
}

std::vector<std::int64_t> CorpusLoader::rows_of(std::int64_t epoch, std::int64_t batch) const {
  const std::vector<std::int64_t>& order = epoch_order(epoch);
  const std::int64_t local = options_.global_batch / options_.dp_size;
  const std::int64_t begin = batch * options_.global_batch + options_.dp_rank * local;
  return {order.begin() + begin, order.begin() + begin + local};
}

Batch CorpusLoader::next() {
  if (state_.next_batch >= batches_per_epoch()) {
    ++state_.epoch;
    state_.next_batch = 0;
  }
  const std::vector<std::int64_t> rows = rows_of(state_.epoch, state_.next_batch);
  ++state_.next_batch;
  if (!options_.augment.any()) return load_batch(corpus_, rows);
  const std::uint64_t epoch_seed = derive_seed(options_.seed, Stream::kAugment, static_cast<std::uint64_t>(state_.epoch));
  return load_batch(corpus_, rows, [&](std::int64_t row, const at::Tensor& features) {
    return augment_features(features, options_.augment, mix64(epoch_seed + static_cast<std::uint64_t>(row)));
  });
}

namespace {

// One item's stored features, [frames, n_mels] float32.
at::Tensor item_features(const CorpusReader& corpus, std::int64_t row) {
  std::vector<std::uint16_t> half = corpus.features(row);
  return torch::from_blob(half.data(), {corpus.frames(row), corpus.n_mels()}, torch::kFloat16).to(torch::kFloat32);
}

}  // namespace

Batch load_batch(const CorpusReader& corpus, const std::vector<std::int64_t>& rows, const FeatureTransform& transform) {
  CORD_CHECK(!rows.empty(), "load_batch: no rows");
  Batch batch;
  batch.items = rows;

  const auto b = static_cast<std::int64_t>(batch.items.size());
  std::vector<at::Tensor> features;
  std::int64_t max_frames = 0, max_question = 0, max_solution = 0;
  for (const std::int64_t row : batch.items) {
    features.push_back(transform ? transform(row, item_features(corpus, row)) : item_features(corpus, row));
    max_frames = std::max(max_frames, features.back().size(0));
    max_question = std::max<std::int64_t>(max_question, static_cast<std::int64_t>(corpus.question(row).size()));
    max_solution = std::max<std::int64_t>(max_solution, static_cast<std::int64_t>(corpus.solution(row).size()));
  }
  const int n_mels = corpus.n_mels();
  batch.features = torch::zeros({b, max_frames, n_mels}, torch::kFloat32);
  batch.feature_lengths = torch::zeros({b}, torch::kInt64);
  batch.feature_mask = torch::zeros({b, max_frames}, torch::kBool);
  batch.question = torch::full({b, max_question}, Tokenizer::kPad, torch::kInt64);
  batch.question_mask = torch::zeros({b, max_question}, torch::kBool);
  batch.solution = torch::full({b, max_solution}, Tokenizer::kPad, torch::kInt64);
  batch.solution_mask = torch::zeros({b, max_solution}, torch::kBool);
  batch.family = torch::zeros({b}, torch::kInt64);
  for (std::int64_t k = 0; k < b; ++k) {
    const std::int64_t row = batch.items[static_cast<std::size_t>(k)];
    const at::Tensor& item = features[static_cast<std::size_t>(k)];
    const std::int64_t frames = item.size(0);
    batch.features[k].slice(0, 0, frames).copy_(item);
    // Whisper features carry 2 frames past the audio that the encoder's convolutions read;
    // its attention covers the valid ones (model/whisper_encoder.hpp). Transformed
    // (augmented cord) features are valid throughout.
    const std::int64_t valid = transform ? frames : corpus.valid_frames(row);
    batch.feature_lengths[k] = valid;
    batch.feature_mask[k].slice(0, 0, frames).fill_(true);
    auto put_tokens = [k](const std::vector<std::int32_t>& ids, at::Tensor& tokens, at::Tensor& mask) {
      const auto n = static_cast<std::int64_t>(ids.size());
      const at::Tensor values = torch::from_blob(const_cast<std::int32_t*>(ids.data()), {n}, torch::kInt32);
      tokens[k].slice(0, 0, n).copy_(values);
      mask[k].slice(0, 0, n).fill_(true);
    };
    put_tokens(corpus.question(row), batch.question, batch.question_mask);
    put_tokens(corpus.solution(row), batch.solution, batch.solution_mask);
    batch.family[k] = static_cast<std::int64_t>(corpus.family(row));
    batch.answers.push_back(corpus.tokenizer().decode(corpus.answer(row)));
  }
  return batch;
}

void CorpusLoader::restore(const LoaderState& state) {
  if (state.seed != options_.seed) {
    throw Error("loader state has seed " + std::to_string(state.seed) + ", this loader " +
                std::to_string(options_.seed));
  }
  if (state.epoch < 0 || state.next_batch < 0 || state.next_batch > batches_per_epoch()) {
    throw Error("loader state (epoch " + std::to_string(state.epoch) + ", batch " + std::to_string(state.next_batch) +
                ") is outside this corpus split");
  }
  state_ = state;
}

}  // namespace cord::data
