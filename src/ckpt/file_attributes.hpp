#pragma once
// Attributes shared by the weights file (model_weights.hpp) and the training checkpoint
// (checkpoint.hpp): the architecture fields, the vocabulary, the resolved config and the
// commit. Private to the ckpt module.
#include <string>
#include <vector>

#include "cord/config/config.hpp"
#include "cord/h5/h5.hpp"

namespace cord::ckpt::detail {

std::string join_lines(const std::vector<std::string>& lines);
std::vector<std::string> split_lines(const std::string& text);

// Root attributes: commit, config (the resolved TOML), vocab (one token per line) and one
// attribute per architecture field ("model.d_model" = "128"). Collective in a parallel file.
void write_model_attributes(h5::File& file, const ModelConfig& model, const std::vector<std::string>& vocab,
                            const std::string& config_toml);

// Checks that `file` (at `path`) is a `noun` ("weights file", "checkpoint") of `format` and
// `version`, written for an architecture equal to `model`; throws UsageError naming the file
// and every architecture field that differs ("model.d_model: file 128, config 256").
void check_file_kind(const h5::File& file, const std::string& path, const std::string& noun, const std::string& format,
                     int64_t version, const ModelConfig& model);

}  // namespace cord::ckpt::detail
