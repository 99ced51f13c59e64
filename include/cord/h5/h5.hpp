#pragma once
// Thin, checked RAII wrappers over the HDF5 C API (in the spirit of HighFive): every raw
// call is made once, in src/h5/h5.cpp, through CORD_H5_CHECK, which turns a negative
// return into a cord::Error carrying HDF5's own error stack, the call, the file and the
// object, and file:line. A File is opened either serially or with the MPI-IO driver; in
// a parallel file, metadata operations (create, attributes, close) are collective and
// data is written by each rank into its own row range (hyperslab) with
// H5FD_MPIO_COLLECTIVE. Generic on purpose: corpora and checkpoints share it.
//
// Thread safety: the HDF5 library is not (this machine's is built without its thread-safe
// option), so every call here holds one process-wide lock; a File may be used by one
// thread at a time, and different Files from different threads.
//
// Datasets are N-dimensional with a leading "row" dimension; reads and writes address
// whole rows [row_offset, row_offset + rows). Strings live in attributes (variable-length
// UTF-8, as h5py writes them; fixed-length strings are read too).
#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "cord/core/error.hpp"

namespace cord::h5 {

// Element types cord stores. kFloat16 is IEEE binary16 (h5py's '<f2'); in memory it is
// the raw 16-bit pattern (std::uint16_t).
enum class Dtype { kInt8, kUInt8, kInt32, kInt64, kFloat16, kFloat32, kFloat64 };
const char* to_string(Dtype dtype);
std::size_t size_of(Dtype dtype);

template <typename T>
constexpr Dtype dtype_of();
template <> constexpr Dtype dtype_of<std::int8_t>() { return Dtype::kInt8; }
template <> constexpr Dtype dtype_of<std::uint8_t>() { return Dtype::kUInt8; }
template <> constexpr Dtype dtype_of<std::int32_t>() { return Dtype::kInt32; }
template <> constexpr Dtype dtype_of<std::int64_t>() { return Dtype::kInt64; }
template <> constexpr Dtype dtype_of<std::uint16_t>() { return Dtype::kFloat16; }  // binary16 bits
template <> constexpr Dtype dtype_of<float>() { return Dtype::kFloat32; }
template <> constexpr Dtype dtype_of<double>() { return Dtype::kFloat64; }

// Owns one HDF5 identifier and releases it with the matching H5*close. Move-only.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle();
  Handle(Handle&& other) noexcept;
  Handle& operator=(Handle&& other) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  hid_t release() { const hid_t id = id_; id_ = -1; return id; }  // the caller closes it now

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// What a dataset holds: element type and shape (row dimension first).
struct DatasetInfo {
  Dtype dtype = Dtype::kUInt8;
  std::vector<std::uint64_t> shape;
  std::uint64_t storage_bytes = 0;  // allocated in the file (H5Dget_storage_size)
  std::uint64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  std::uint64_t row_elements() const;  // product of the dimensions after the first
};

class File {
 public:
  // Creates (truncating) `path`. With comm != MPI_COMM_NULL the file is opened with the
  // MPI-IO driver and the call is collective over comm.
  static File create(const std::string& path, MPI_Comm comm = MPI_COMM_NULL);
  // Opens `path` read-only. Throws Error "cannot open PATH as HDF5: ..." when the file is
  // missing, truncated or not HDF5.
  static File open_read_only(const std::string& path, MPI_Comm comm = MPI_COMM_NULL);
  // Opens a file image held in memory (HDF5's core driver; the bytes are copied), read-only;
  // `name` stands for the file in messages. For readers fuzzed from a byte buffer.
  static File open_image(const void* data, std::size_t size, const std::string& name);

  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;
  ~File() = default;  // closes without checking; call close() to see errors

  const std::string& path() const { return path_; }
  bool parallel() const { return parallel_; }
  // Flushes and closes (collective in a parallel file); errors throw.
  void close();

  // True when `object` ("/a/b") exists; every intermediate group must exist or be absent.
  bool exists(const std::string& object) const;
  void create_group(const std::string& group);

  // Attributes of `object` ("/" for the root). Writes in a parallel file are collective
  // and every rank must pass the same value.
  void set_attribute(const std::string& object, const std::string& name, std::int64_t value);
  void set_attribute(const std::string& object, const std::string& name, double value);
  void set_attribute(const std::string& object, const std::string& name, const std::string& value);
  bool has_attribute(const std::string& object, const std::string& name) const;
  // Readers throw Error naming file, object and attribute when it is missing or of another kind.
  std::int64_t attribute_int(const std::string& object, const std::string& name) const;
  double attribute_double(const std::string& object, const std::string& name) const;
  std::string attribute_string(const std::string& object, const std::string& name) const;

  // Creates a dataset (collective in a parallel file): contiguous when chunk_rows == 0,
  // otherwise chunked by `chunk_rows` rows with an unlimited row dimension (see set_rows).
  void create_dataset(const std::string& dataset, Dtype dtype, const std::vector<std::uint64_t>& shape,
                      std::uint64_t chunk_rows = 0);
  // Grows (or shrinks) a chunked dataset to `rows` rows; collective in a parallel file,
  // where every rank must pass the same value.
  void set_rows(const std::string& dataset, std::uint64_t rows);
  // Throws Error "PATH: missing dataset /x" when absent.
  DatasetInfo dataset_info(const std::string& dataset) const;

  // Writes rows [row_offset, row_offset + rows) from `data` (rows * row_elements values
  // of `dtype`). In a parallel file every rank calls it (collective I/O), rows may be 0.
  void write_rows(const std::string& dataset, std::uint64_t row_offset, std::uint64_t rows, const void* data,
                  Dtype dtype);
  // Reads rows [row_offset, row_offset + rows) into `data`, converting to `dtype`.
  void read_rows(const std::string& dataset, std::uint64_t row_offset, std::uint64_t rows, void* data,
                 Dtype dtype) const;

  // Writes the block start[d] .. start[d] + count[d] (one entry per dimension; a scalar
  // dataset has one dimension of 1) from `data`, the block's elements contiguous in C order.
  // In a parallel file every rank calls it; a rank with nothing to write passes data = nullptr.
  void write_block(const std::string& dataset, const std::vector<std::uint64_t>& start,
                   const std::vector<std::uint64_t>& count, const void* data, Dtype dtype);
  // Reads such a block into `data` (nullptr: this rank reads nothing), converting to `dtype`.
  void read_block(const std::string& dataset, const std::vector<std::uint64_t>& start,
                  const std::vector<std::uint64_t>& count, void* data, Dtype dtype) const;

  template <typename T>
  void write(const std::string& dataset, std::uint64_t row_offset, const std::vector<T>& values,
             std::uint64_t row_elements = 1) {
    write_rows(dataset, row_offset, values.size() / row_elements, values.data(), dtype_of<T>());
  }
  // The whole dataset, flattened, converted to T. A shape too large to hold, or far larger
  // than the file's storage for it (a damaged file can claim any), is an Error naming the
  // dataset, not a bare std::bad_alloc or a terabyte allocation.
  template <typename T>
  std::vector<T> read_all(const std::string& dataset) const {
    const DatasetInfo info = dataset_info(dataset);
    const std::uint64_t elements = info.rows() * info.row_elements();
    check_plausible_size(dataset, info, sizeof(T));
    std::vector<T> values;
    try {
      values.resize(elements);
    } catch (const std::bad_alloc&) {
      throw_too_large(dataset, elements);
    } catch (const std::length_error&) {
      throw_too_large(dataset, elements);
    }
    read_rows(dataset, 0, info.rows(), values.data(), dtype_of<T>());
    return values;
  }
  [[noreturn]] void throw_too_large(const std::string& dataset, std::uint64_t elements) const;
  // Throws that Error when `info` (of `dataset`), read as elements of `element_bytes`, claims
  // more than 1000x the bytes the file holds for it (+ 64 MiB): no real compression gets
  // there, so the shape is damaged, and on a machine that overcommits memory allocating it
  // would not fail but page in terabytes. Call before allocating for a whole dataset.
  void check_plausible_size(const std::string& dataset, const DatasetInfo& info, std::size_t element_bytes) const;

  // write_block writes blocks larger than this in pieces (see there).
  static constexpr std::uint64_t kWritePieceBytes = std::uint64_t{16} << 20;

 private:
  void write_piece(const std::string& dataset, const std::vector<std::uint64_t>& start,
                   const std::vector<std::uint64_t>& count, const void* data, Dtype dtype);
  File(Handle handle, std::string path, bool parallel)
      : handle_(std::move(handle)), path_(std::move(path)), parallel_(parallel) {}
  std::string where(const std::string& object) const;  // "PATH dataset /x" for messages
  Handle handle_;
  std::string path_;
  bool parallel_ = false;
};

namespace detail {
// HDF5's error stack as one line (most specific message first), then cleared.
std::string error_stack_text();
}  // namespace detail

}  // namespace cord::h5

// CORD_H5_CHECK(call, context): HDF5 calls return a negative value on failure; the error
// names the call, `context` (a std::string: file and object), HDF5's message and file:line.
#define CORD_H5_CHECK(call, context)                                                          \
  ([&]() {                                                                                    \
    const auto cord_h5_result = (call);                                                       \
    if (cord_h5_result < 0) {                                                                 \
      ::cord::raise_library_error(::cord::ExitCode::kRuntimeError, "HDF5", #call,             \
                                  std::string(context) + ": " + ::cord::h5::detail::error_stack_text(), \
                                  __FILE__, __LINE__);                                        \
    }                                                                                         \
    return cord_h5_result;                                                                    \
  }())
