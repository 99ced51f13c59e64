#pragma once
// Reads whole datasets of a small HDF5 test fixture into tensors (float32 or int64).
// Test-only and read-only; production HDF5 access goes through cord's own wrappers.
#include <hdf5.h>

#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace cord::testing {

class Hdf5Fixture {
 public:
  explicit Hdf5Fixture(const std::string& path) : path_(path), file_(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)) {
    if (file_ < 0) throw std::runtime_error("cannot open HDF5 fixture " + path);
  }
  ~Hdf5Fixture() { H5Fclose(file_); }
  Hdf5Fixture(const Hdf5Fixture&) = delete;
  Hdf5Fixture& operator=(const Hdf5Fixture&) = delete;

  at::Tensor read(const std::string& name, at::ScalarType type) const {
    const hid_t dataset = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
    if (dataset < 0) throw std::runtime_error("dataset " + name + " missing in " + path_);
    const hid_t space = H5Dget_space(dataset);
    const int rank = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    std::vector<int64_t> shape(dims.begin(), dims.end());
    at::Tensor out = torch::empty(shape, type);
    const hid_t memory_type = type == at::kLong ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT;
    const herr_t status = H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr());
    H5Sclose(space);
    H5Dclose(dataset);
    if (status < 0) throw std::runtime_error("cannot read dataset " + name + " of " + path_);
    return out;
  }

 private:
  std::string path_;
  hid_t file_;
};

}  // namespace cord::testing
