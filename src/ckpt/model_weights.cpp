#include "cord/ckpt/model_weights.hpp"

#include <unistd.h>

#include <cstdio>
#include <algorithm>

#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "cord/core/files.hpp"
#include "cord/h5/h5.hpp"
#include "file_attributes.hpp"

namespace cord::ckpt {
namespace {

constexpr const char* kFormat = "cord-weights";
constexpr int64_t kVersion = 1;

std::string param_dataset(const std::string& name) { return "/params/" + name; }

}  // namespace

at::Tensor gather_global(const model::ParamShard& shard, const comm::ProcessGroup& tp_group) {
  const at::Tensor local = shard.param.detach().to(torch::kFloat).contiguous();
  if (shard.split_dim < 0 || tp_group.size() == 1) return local.cpu();
  std::vector<int64_t> stacked_shape{tp_group.size()};
  for (const int64_t d : local.sizes()) stacked_shape.push_back(d);
  const at::Tensor stacked = torch::empty(stacked_shape, local.options());
  comm::all_gather(tp_group, local, stacked);
  std::vector<at::Tensor> parts;  // one per distinct slice: every replicas-th rank's
  for (int64_t rank = 0; rank < tp_group.size(); rank += shard.replicas) parts.push_back(stacked[rank]);
  // A padded vocabulary's tail rows are not part of the global tensor.
  const int64_t rows = shard.global_shape[static_cast<size_t>(shard.split_dim)];
  return torch::cat(parts, shard.split_dim).narrow(shard.split_dim, 0, rows).contiguous().cpu();
}

namespace {

void write_file(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                const WeightsMeta& meta, const ModelConfig& model_config) {
  h5::File file = h5::File::create(path);
  file.set_attribute("/", "format", std::string(kFormat));
  file.set_attribute("/", "version", kVersion);
  file.set_attribute("/", "stage", meta.stage);
  file.set_attribute("/", "step", meta.step);
  detail::write_model_attributes(file, model_config, meta.vocab, meta.config_toml);
  file.create_group("/params");
  for (const auto& [name, value] : tensors) {
    std::vector<uint64_t> shape(value.sizes().begin(), value.sizes().end());
    if (shape.empty()) shape = {1};
    file.create_dataset(param_dataset(name), h5::Dtype::kFloat32, shape);
    file.write_rows(param_dataset(name), 0, shape[0], value.data_ptr<float>(), h5::Dtype::kFloat32);
  }
  file.close();
}

}  // namespace

void save_weights(const std::string& path, model::Lalm& model, const comm::ProcessGroups& groups,
                  const WeightsMeta& meta) {
  const bool writer_group = groups.dp.rank() == 0;  // the tp ranks of dp rank 0
  const bool writer = groups.world.rank() == 0;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  if (writer_group) {
    for (const model::ParamShard& shard : model::sharded_parameters(*model, groups.tp)) {
      at::Tensor global = gather_global(shard, groups.tp);
      if (writer) tensors.emplace_back(shard.name, std::move(global));
    }
  }
  std::string failure;
  if (writer) {
    const std::string temporary = temporary_name(path, static_cast<long>(getpid()));
    try {
      write_file(temporary, tensors, meta, model->config());
      fsync_path(temporary, false);
      commit_rename(temporary, path);
    } catch (const std::exception& e) {
      std::remove(temporary.c_str());
      failure = e.what();
    }
  }
  // Every rank learns whether the file exists.
  at::Tensor failed = torch::full({1}, failure.empty() ? 0 : 1, torch::kInt64);
  comm::all_reduce(groups.world, failed, comm::ReduceOp::kMax);
  if (failed.item<int64_t>() != 0) {
    throw Error(writer ? "cannot save weights to " + path + ": " + failure
                       : "rank 0 could not save weights to " + path);
  }
}

WeightsHeader read_weights_header(const std::string& path, const ModelConfig& model_config) {
  if (access(path.c_str(), R_OK) != 0) throw UsageError("weights file " + path + " does not exist or is unreadable");
  const h5::File file = h5::File::open_read_only(path);
  detail::check_file_kind(file, path, "weights file", kFormat, kVersion, model_config);
  WeightsHeader header;
  header.path = path;
  header.stage = file.attribute_string("/", "stage");
  header.step = file.attribute_int("/", "step");
  header.commit = file.attribute_string("/", "commit");
  header.vocab = detail::split_lines(file.attribute_string("/", "vocab"));
  return header;
}

WeightsHeader load_weights(const std::string& path, model::Lalm& model) {
  WeightsHeader header = read_weights_header(path, model->config());
  const h5::File file = h5::File::open_read_only(path);
  torch::NoGradGuard no_grad;
  for (const model::ParamShard& shard : model::sharded_parameters(*model, model->tp_group())) {
    const std::string dataset = param_dataset(shard.name);
    if (!file.exists(dataset)) throw Error("weights file " + path + " has no parameter " + shard.name);
    const h5::DatasetInfo info = file.dataset_info(dataset);
    std::vector<int64_t> shape(info.shape.begin(), info.shape.end());
    const std::vector<int64_t> wanted = shard.global_shape.empty() ? std::vector<int64_t>{1} : shard.global_shape;
    if (shape != wanted) {
      throw Error("weights file " + path + ": parameter " + shard.name + " has shape " + c10::str(shape) +
                  ", the model expects " + c10::str(wanted));
    }
    std::vector<float> values = file.read_all<float>(dataset);
    at::Tensor global = torch::from_blob(values.data(), shard.global_shape, torch::kFloat);
    if (shard.split_dim >= 0) global = global.narrow(shard.split_dim, shard.offset, shard.length);
    shard.param.zero_();  // the padding rows, if any, stay zero
    shard.in_global().copy_(global);
  }
  return header;
}

void check_same_vocab(const WeightsHeader& weights, const std::vector<std::string>& vocab,
                      const std::string& corpus_path) {
  const size_t common = std::min(weights.vocab.size(), vocab.size());
  for (size_t i = 0; i < common; ++i) {
    if (weights.vocab[i] != vocab[i]) {
      throw UsageError("corpus " + corpus_path + " and weights " + weights.path + " have different vocabularies: token " +
                       std::to_string(i) + " is '" + vocab[i] + "' in the corpus, '" + weights.vocab[i] +
                       "' in the weights");
    }
  }
  if (weights.vocab.size() != vocab.size()) {
    throw UsageError("corpus " + corpus_path + " has " + std::to_string(vocab.size()) + " tokens, weights " +
                     weights.path + " were trained with " + std::to_string(weights.vocab.size()));
  }
}

}  // namespace cord::ckpt
