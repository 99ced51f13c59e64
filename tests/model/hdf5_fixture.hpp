#pragma once
// Reads whole datasets of a small HDF5 test fixture into tensors (float32 or int64),
// through cord's checked HDF5 wrappers.
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cord/h5/h5.hpp"

namespace cord::testing {

class Hdf5Fixture {
 public:
  explicit Hdf5Fixture(const std::string& path) : file_(h5::File::open_read_only(path)) {}

  at::Tensor read(const std::string& name, at::ScalarType type) const {
    const std::string dataset = "/" + name;
    const h5::DatasetInfo info = file_.dataset_info(dataset);
    const at::Tensor out = torch::empty(std::vector<int64_t>(info.shape.begin(), info.shape.end()), type);
    file_.read_rows(dataset, 0, info.rows(), out.data_ptr(), type == at::kLong ? h5::Dtype::kInt64 : h5::Dtype::kFloat32);
    return out;
  }

 private:
  h5::File file_;
};

}  // namespace cord::testing
