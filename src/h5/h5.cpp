#include "cord/h5/h5.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <utility>

#include "cord/core/progress.hpp"

namespace cord::h5 {
namespace {

// The HDF5 library here is built without its thread-safety option ("Threadsafety: no" in
// libhdf5.settings): one thread at a time may be inside it. Every entry point of this file
// holds this recursive lock for its whole call, so that the asynchronous checkpoint writer
// and the training thread (corpus reads) can share the library. No HDF5 call made under it
// waits for another thread of this process; a collective one waits only for the same call
// on other ranks, which needs no lock of this process.
std::recursive_mutex& library_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}
using LibraryLock = std::lock_guard<std::recursive_mutex>;

// HDF5 prints its error stack to stderr by default; cord reports it in its own errors.
void silence_automatic_error_printing() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// A binary16 file/memory type (HDF5 1.10 has no predefined one): 1 sign bit, 5 exponent
// bits with bias 15, 10 mantissa bits, little-endian — what h5py reads as float16.
hid_t make_float16_type() {
  const hid_t type = CORD_H5_CHECK(H5Tcopy(H5T_IEEE_F32LE), "creating the float16 type");
  CORD_H5_CHECK(H5Tset_fields(type, 15, 10, 5, 0, 10), "float16 fields");
  CORD_H5_CHECK(H5Tset_size(type, 2), "float16 size");
  CORD_H5_CHECK(H5Tset_ebias(type, 15), "float16 exponent bias");
  return type;
}

// A type handle for `dtype`; predefined types are not closed, the float16 copy is.
Handle type_handle(Dtype dtype) {
  auto predefined = [](hid_t id) { return Handle(id, nullptr); };
  switch (dtype) {
    case Dtype::kInt8: return predefined(H5T_NATIVE_INT8);
    case Dtype::kUInt8: return predefined(H5T_NATIVE_UINT8);
    case Dtype::kInt32: return predefined(H5T_NATIVE_INT32);
    case Dtype::kInt64: return predefined(H5T_NATIVE_INT64);
    case Dtype::kFloat16: return Handle(make_float16_type(), &H5Tclose);
    case Dtype::kFloat32: return predefined(H5T_NATIVE_FLOAT);
    case Dtype::kFloat64: return predefined(H5T_NATIVE_DOUBLE);
  }
  throw Error("unknown h5::Dtype");
}

Handle file_access_plist(MPI_Comm comm, const std::string& path) {
  Handle fapl(CORD_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS), path), &H5Pclose);
  if (comm != MPI_COMM_NULL) CORD_H5_CHECK(H5Pset_fapl_mpio(fapl.id(), comm, MPI_INFO_NULL), path);
  return fapl;
}

herr_t collect_error_message(unsigned depth, const H5E_error2_t* error, void* out) {
  auto& text = *static_cast<std::string*>(out);
  if (error->desc == nullptr || error->desc[0] == '\0') return 0;
  if (depth > 0) text += "; ";
  text += error->desc;
  return 0;
}

}  // namespace

namespace detail {
std::string error_stack_text() {
  const LibraryLock lock(library_mutex());
  std::string text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, &collect_error_message, &text);
  H5Eclear2(H5E_DEFAULT);
  return text.empty() ? "no HDF5 error message" : text;
}
}  // namespace detail

const char* to_string(Dtype dtype) {
  switch (dtype) {
    case Dtype::kInt8: return "int8";
    case Dtype::kUInt8: return "uint8";
    case Dtype::kInt32: return "int32";
    case Dtype::kInt64: return "int64";
    case Dtype::kFloat16: return "float16";
    case Dtype::kFloat32: return "float32";
    case Dtype::kFloat64: return "float64";
  }
  return "?";
}

std::size_t size_of(Dtype dtype) {
  switch (dtype) {
    case Dtype::kInt8:
    case Dtype::kUInt8: return 1;
    case Dtype::kFloat16: return 2;
    case Dtype::kInt32:
    case Dtype::kFloat32: return 4;
    case Dtype::kInt64:
    case Dtype::kFloat64: return 8;
  }
  return 0;
}

std::uint64_t DatasetInfo::row_elements() const {
  std::uint64_t n = 1;
  for (std::size_t d = 1; d < shape.size(); ++d) n *= shape[d];
  return n;
}

Handle::~Handle() {
  if (id_ >= 0 && closer_ != nullptr) {
    const LibraryLock lock(library_mutex());
    closer_(id_);
  }
}

Handle::Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, -1)), closer_(other.closer_) {}

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    if (id_ >= 0 && closer_ != nullptr) {
      const LibraryLock lock(library_mutex());
      closer_(id_);
    }
    id_ = std::exchange(other.id_, -1);
    closer_ = other.closer_;
  }
  return *this;
}

File File::create(const std::string& path, MPI_Comm comm) {
  const LibraryLock lock(library_mutex());
  silence_automatic_error_printing();
  const Handle fapl = file_access_plist(comm, path);
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id());
  if (id < 0) throw Error("cannot create HDF5 file " + path + ": " + detail::error_stack_text());
  return File(Handle(id, &H5Fclose), path, comm != MPI_COMM_NULL);
}

File File::open_read_only(const std::string& path, MPI_Comm comm) {
  const LibraryLock lock(library_mutex());
  silence_automatic_error_printing();
  const Handle fapl = file_access_plist(comm, path);
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id());
  if (id < 0) {
    throw Error("cannot open " + path + " as HDF5 (missing, truncated or not an HDF5 file): " +
                detail::error_stack_text());
  }
  return File(Handle(id, &H5Fclose), path, comm != MPI_COMM_NULL);
}

File File::open_image(const void* data, std::size_t size, const std::string& name) {
  const LibraryLock lock(library_mutex());
  silence_automatic_error_printing();
  Handle fapl(CORD_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS), name), &H5Pclose);
  CORD_H5_CHECK(H5Pset_fapl_core(fapl.id(), 1 << 16, 0), name);  // in memory, never written back
  CORD_H5_CHECK(H5Pset_file_image(fapl.id(), const_cast<void*>(data), size), name);
  const hid_t id = H5Fopen(name.c_str(), H5F_ACC_RDONLY, fapl.id());
  if (id < 0) throw Error("cannot open " + name + " as HDF5 (not an HDF5 file image): " + detail::error_stack_text());
  return File(Handle(id, &H5Fclose), name, false);
}

void File::check_plausible_size(const std::string& dataset, const DatasetInfo& info, std::size_t element_bytes) const {
  // The element count itself may overflow for a damaged shape: count with saturation.
  std::uint64_t elements = 1;
  for (const std::uint64_t dim : info.shape) {
    if (__builtin_mul_overflow(elements, dim, &elements)) elements = UINT64_MAX;
  }
  if (elements > (info.storage_bytes * 1000 + (std::uint64_t{64} << 20)) / element_bytes) {
    throw_too_large(dataset, elements);
  }
}

void File::throw_too_large(const std::string& dataset, std::uint64_t elements) const {
  throw Error(where(dataset) + ": its shape claims " + std::to_string(elements) +
              " elements, more than the file stores or memory can hold (is the file damaged?)");
}

std::string File::where(const std::string& object) const { return path_ + " object " + object; }

void File::close() {
  const LibraryLock lock(library_mutex());
  if (!handle_.valid()) return;
  const hid_t id = handle_.release();
  const herr_t flushed = H5Fflush(id, H5F_SCOPE_GLOBAL);
  const std::string flush_error = flushed < 0 ? detail::error_stack_text() : "";
  CORD_H5_CHECK(H5Fclose(id), "closing " + path_);
  if (flushed < 0) throw Error("HDF5 could not flush " + path_ + ": " + flush_error);
}

bool File::exists(const std::string& object) const {
  const LibraryLock lock(library_mutex());
  if (object == "/") return true;
  // H5Lexists needs every intermediate link to exist: walk the path from the root.
  std::string prefix;
  std::size_t start = 1;
  while (start <= object.size()) {
    const std::size_t end = object.find('/', start);
    prefix = object.substr(0, end == std::string::npos ? object.size() : end);
    if (CORD_H5_CHECK(H5Lexists(handle_.id(), prefix.c_str(), H5P_DEFAULT), where(prefix)) <= 0) return false;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return true;
}

void File::create_group(const std::string& group) {
  const LibraryLock lock(library_mutex());
  const Handle g(CORD_H5_CHECK(H5Gcreate2(handle_.id(), group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                               where(group)),
                 &H5Gclose);
}

namespace {

Handle open_object(hid_t file, const std::string& object, const std::string& context) {
  return Handle(CORD_H5_CHECK(H5Oopen(file, object.c_str(), H5P_DEFAULT), context), &H5Oclose);
}

void write_attribute(hid_t file, const std::string& object, const std::string& name, hid_t type,
                     const void* value, const std::string& context) {
  const Handle target = open_object(file, object, context);
  if (CORD_H5_CHECK(H5Aexists(target.id(), name.c_str()), context) > 0) {
    CORD_H5_CHECK(H5Adelete(target.id(), name.c_str()), context);
  }
  const Handle space(CORD_H5_CHECK(H5Screate(H5S_SCALAR), context), &H5Sclose);
  const Handle attribute(
      CORD_H5_CHECK(H5Acreate2(target.id(), name.c_str(), type, space.id(), H5P_DEFAULT, H5P_DEFAULT), context),
      &H5Aclose);
  CORD_H5_CHECK(H5Awrite(attribute.id(), type, value), context);
}

}  // namespace

void File::set_attribute(const std::string& object, const std::string& name, std::int64_t value) {
  const LibraryLock lock(library_mutex());
  write_attribute(handle_.id(), object, name, H5T_NATIVE_INT64, &value, where(object) + " attribute " + name);
}

void File::set_attribute(const std::string& object, const std::string& name, double value) {
  const LibraryLock lock(library_mutex());
  write_attribute(handle_.id(), object, name, H5T_NATIVE_DOUBLE, &value, where(object) + " attribute " + name);
}

void File::set_attribute(const std::string& object, const std::string& name, const std::string& value) {
  const LibraryLock lock(library_mutex());
  const std::string context = where(object) + " attribute " + name;
  const Handle type(CORD_H5_CHECK(H5Tcopy(H5T_C_S1), context), &H5Tclose);
  CORD_H5_CHECK(H5Tset_size(type.id(), H5T_VARIABLE), context);
  CORD_H5_CHECK(H5Tset_cset(type.id(), H5T_CSET_UTF8), context);
  const char* text = value.c_str();
  write_attribute(handle_.id(), object, name, type.id(), &text, context);
}

bool File::has_attribute(const std::string& object, const std::string& name) const {
  const LibraryLock lock(library_mutex());
  if (!exists(object)) return false;
  const Handle target = open_object(handle_.id(), object, where(object));
  return CORD_H5_CHECK(H5Aexists(target.id(), name.c_str()), where(object)) > 0;
}

namespace {

// Opens attribute `name` of `object`, requiring the given type class.
Handle open_attribute(const File& file, hid_t file_id, const std::string& object, const std::string& name,
                      H5T_class_t wanted, const std::string& context) {
  if (!file.has_attribute(object, name)) throw Error(context + " is missing");
  const Handle target = open_object(file_id, object, context);
  Handle attribute(CORD_H5_CHECK(H5Aopen(target.id(), name.c_str(), H5P_DEFAULT), context), &H5Aclose);
  const Handle type(CORD_H5_CHECK(H5Aget_type(attribute.id()), context), &H5Tclose);
  const Handle space(CORD_H5_CHECK(H5Aget_space(attribute.id()), context), &H5Sclose);
  if (CORD_H5_CHECK(H5Tget_class(type.id()), context) != wanted ||
      CORD_H5_CHECK(H5Sget_simple_extent_npoints(space.id()), context) != 1) {
    const char* kind = wanted == H5T_INTEGER ? "an integer" : wanted == H5T_FLOAT ? "a float" : "a string";
    throw Error(context + " is not " + kind + " scalar");
  }
  return attribute;
}

}  // namespace

std::int64_t File::attribute_int(const std::string& object, const std::string& name) const {
  const LibraryLock lock(library_mutex());
  const std::string context = where(object) + " attribute " + name;
  const Handle attribute = open_attribute(*this, handle_.id(), object, name, H5T_INTEGER, context);
  std::int64_t value = 0;
  CORD_H5_CHECK(H5Aread(attribute.id(), H5T_NATIVE_INT64, &value), context);
  return value;
}

double File::attribute_double(const std::string& object, const std::string& name) const {
  const LibraryLock lock(library_mutex());
  const std::string context = where(object) + " attribute " + name;
  const Handle attribute = open_attribute(*this, handle_.id(), object, name, H5T_FLOAT, context);
  double value = 0;
  CORD_H5_CHECK(H5Aread(attribute.id(), H5T_NATIVE_DOUBLE, &value), context);
  return value;
}

std::string File::attribute_string(const std::string& object, const std::string& name) const {
  const LibraryLock lock(library_mutex());
  const std::string context = where(object) + " attribute " + name;
  const Handle attribute = open_attribute(*this, handle_.id(), object, name, H5T_STRING, context);
  const Handle type(CORD_H5_CHECK(H5Aget_type(attribute.id()), context), &H5Tclose);
  if (CORD_H5_CHECK(H5Tis_variable_str(type.id()), context) > 0) {
    const Handle memory_type(CORD_H5_CHECK(H5Tcopy(H5T_C_S1), context), &H5Tclose);
    CORD_H5_CHECK(H5Tset_size(memory_type.id(), H5T_VARIABLE), context);
    CORD_H5_CHECK(H5Tset_cset(memory_type.id(), H5Tget_cset(type.id())), context);  // no ASCII<->UTF-8 conversion exists
    char* text = nullptr;
    CORD_H5_CHECK(H5Aread(attribute.id(), memory_type.id(), &text), context);
    std::string value = text != nullptr ? text : "";
    H5free_memory(text);
    return value;
  }
  const std::size_t size = H5Tget_size(type.id());
  std::string value(size, '\0');
  CORD_H5_CHECK(H5Aread(attribute.id(), type.id(), value.data()), context);
  value.resize(value.find('\0') == std::string::npos ? size : value.find('\0'));  // NUL-padded
  return value;
}

void File::create_dataset(const std::string& dataset, Dtype dtype, const std::vector<std::uint64_t>& shape,
                          std::uint64_t chunk_rows) {
  const LibraryLock lock(library_mutex());
  const std::string context = where(dataset);
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  std::vector<hsize_t> max_dims(dims);
  const Handle create_plist(CORD_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), context), &H5Pclose);
  if (chunk_rows > 0) {
    CORD_CHECK(!dims.empty(), "a chunked dataset needs a row dimension");
    max_dims[0] = H5S_UNLIMITED;
    std::vector<hsize_t> chunk(dims);
    chunk[0] = chunk_rows;
    CORD_H5_CHECK(H5Pset_chunk(create_plist.id(), static_cast<int>(chunk.size()), chunk.data()), context);
  }
  const Handle space(
      CORD_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), max_dims.data()), context), &H5Sclose);
  const Handle type = type_handle(dtype);
  const Handle created(CORD_H5_CHECK(H5Dcreate2(handle_.id(), dataset.c_str(), type.id(), space.id(), H5P_DEFAULT,
                                                create_plist.id(), H5P_DEFAULT),
                                     context),
                       &H5Dclose);
}

void File::set_rows(const std::string& dataset, std::uint64_t rows) {
  const LibraryLock lock(library_mutex());
  const std::string context = where(dataset);
  const Handle set(CORD_H5_CHECK(H5Dopen2(handle_.id(), dataset.c_str(), H5P_DEFAULT), context), &H5Dclose);
  const Handle space(CORD_H5_CHECK(H5Dget_space(set.id()), context), &H5Sclose);
  const int rank = CORD_H5_CHECK(H5Sget_simple_extent_ndims(space.id()), context);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  CORD_H5_CHECK(H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr), context);
  CORD_CHECK(!dims.empty(), "set_rows on a scalar dataset " + context);
  dims[0] = rows;
  CORD_H5_CHECK(H5Dset_extent(set.id(), dims.data()), context);
}

DatasetInfo File::dataset_info(const std::string& dataset) const {
  const LibraryLock lock(library_mutex());
  if (!exists(dataset)) throw Error(path_ + ": missing dataset " + dataset);
  const std::string context = where(dataset);
  const Handle set(CORD_H5_CHECK(H5Dopen2(handle_.id(), dataset.c_str(), H5P_DEFAULT), context), &H5Dclose);
  const Handle type(CORD_H5_CHECK(H5Dget_type(set.id()), context), &H5Tclose);
  const Handle space(CORD_H5_CHECK(H5Dget_space(set.id()), context), &H5Sclose);
  DatasetInfo info;
  info.storage_bytes = H5Dget_storage_size(set.id());
  const int rank = CORD_H5_CHECK(H5Sget_simple_extent_ndims(space.id()), context);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  CORD_H5_CHECK(H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr), context);
  info.shape.assign(dims.begin(), dims.end());
  const H5T_class_t type_class = H5Tget_class(type.id());
  const std::size_t size = H5Tget_size(type.id());
  if (type_class == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type.id()) == H5T_SGN_2;
    if (size == 1) info.dtype = is_signed ? Dtype::kInt8 : Dtype::kUInt8;
    else if (size == 4 && is_signed) info.dtype = Dtype::kInt32;
    else if (size == 8 && is_signed) info.dtype = Dtype::kInt64;
    else throw Error(context + ": unsupported integer type of " + std::to_string(size) + " bytes");
  } else if (type_class == H5T_FLOAT) {
    if (size == 2) info.dtype = Dtype::kFloat16;
    else if (size == 4) info.dtype = Dtype::kFloat32;
    else if (size == 8) info.dtype = Dtype::kFloat64;
    else throw Error(context + ": unsupported float type of " + std::to_string(size) + " bytes");
  } else {
    throw Error(context + ": not a numeric dataset");
  }
  return info;
}

namespace {

struct BlockTransfer {
  Handle dataset, file_space, memory_space, xfer;
};

// The block start[d] .. start[d] + count[d] of a dataset (every dimension; a scalar dataset
// counts as shape {1}), or nothing when `none`; memory holds the block contiguously.
BlockTransfer prepare_block(hid_t file, const std::string& name, std::vector<hsize_t> start,
                            std::vector<hsize_t> count, bool none, bool collective, const std::string& context) {
  BlockTransfer t;
  t.dataset = Handle(CORD_H5_CHECK(H5Dopen2(file, name.c_str(), H5P_DEFAULT), context), &H5Dclose);
  t.file_space = Handle(CORD_H5_CHECK(H5Dget_space(t.dataset.id()), context), &H5Sclose);
  const int rank = CORD_H5_CHECK(H5Sget_simple_extent_ndims(t.file_space.id()), context);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  CORD_H5_CHECK(H5Sget_simple_extent_dims(t.file_space.id(), dims.data(), nullptr), context);
  const bool scalar = dims.empty();
  if (scalar) dims.push_back(1);
  if (start.size() != dims.size() || count.size() != dims.size()) {
    throw Error(context + ": a block of " + std::to_string(start.size()) + " dimensions for a dataset of " +
                std::to_string(dims.size()));
  }
  for (std::size_t d = 0; d < dims.size() && !none; ++d) {
    if (start[d] + count[d] > dims[d]) {
      throw Error(context + ": dimension " + std::to_string(d) + " range [" + std::to_string(start[d]) + ", " +
                  std::to_string(start[d] + count[d]) + ") outside its extent " + std::to_string(dims[d]));
    }
  }
  if (none) {
    CORD_H5_CHECK(H5Sselect_none(t.file_space.id()), context);
  } else if (!scalar) {
    CORD_H5_CHECK(
        H5Sselect_hyperslab(t.file_space.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
        context);
  }
  std::vector<hsize_t> memory_dims(count);
  for (hsize_t& d : memory_dims) d = std::max<hsize_t>(d, 1);
  t.memory_space = Handle(
      CORD_H5_CHECK(H5Screate_simple(static_cast<int>(memory_dims.size()), memory_dims.data(), nullptr), context),
      &H5Sclose);
  if (none) CORD_H5_CHECK(H5Sselect_none(t.memory_space.id()), context);
  t.xfer = Handle(CORD_H5_CHECK(H5Pcreate(H5P_DATASET_XFER), context), &H5Pclose);
  if (collective) CORD_H5_CHECK(H5Pset_dxpl_mpio(t.xfer.id(), H5FD_MPIO_COLLECTIVE), context);
  return t;
}

// Rows [row_offset, row_offset + rows) with every element of the other dimensions.
BlockTransfer prepare_rows(hid_t file, const std::string& name, std::uint64_t row_offset, std::uint64_t rows,
                           bool collective, const std::string& context) {
  const Handle set(CORD_H5_CHECK(H5Dopen2(file, name.c_str(), H5P_DEFAULT), context), &H5Dclose);
  const Handle space(CORD_H5_CHECK(H5Dget_space(set.id()), context), &H5Sclose);
  const int rank = CORD_H5_CHECK(H5Sget_simple_extent_ndims(space.id()), context);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  CORD_H5_CHECK(H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr), context);
  if (dims.empty()) dims.push_back(1);
  if (row_offset + rows > dims[0]) {
    throw Error(context + ": rows [" + std::to_string(row_offset) + ", " + std::to_string(row_offset + rows) +
                ") outside the " + std::to_string(dims[0]) + " rows of the dataset");
  }
  std::vector<hsize_t> start(dims.size(), 0), count(dims);
  start[0] = row_offset;
  count[0] = rows;
  return prepare_block(file, name, start, count, rows == 0, collective, context);
}

// Test hook: CORD_TEST_SLOW_H5_MS=N makes every dataset transfer take N ms longer, as a slow
// file system would, so that the tests can show a long save or validation that keeps
// making progress does not trip the hang watchdog.
void slow_down_for_test() {
  static const long delay_ms = [] {
    const char* text = std::getenv("CORD_TEST_SLOW_H5_MS");
    return text == nullptr ? 0L : std::strtol(text, nullptr, 10);
  }();
  if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
}

void transfer(const BlockTransfer& t, Dtype dtype, const void* write_data, void* read_data, bool none,
              const std::string& context) {
  // Long saves and loads are many transfers: each one's start and end count as progress
  // for the hang watchdog.
  mark_progress();
  slow_down_for_test();
  const Handle type = type_handle(dtype);
  static char nothing = 0;  // HDF5 rejects a null buffer even when nothing is selected
  if (write_data != nullptr || read_data == nullptr) {
    CORD_H5_CHECK(H5Dwrite(t.dataset.id(), type.id(), t.memory_space.id(), t.file_space.id(), t.xfer.id(),
                           none ? &nothing : write_data),
                  context);
  } else {
    CORD_H5_CHECK(H5Dread(t.dataset.id(), type.id(), t.memory_space.id(), t.file_space.id(), t.xfer.id(),
                          none ? &nothing : read_data),
                  context);
  }
  mark_progress();
}

}  // namespace

void File::write_rows(const std::string& dataset, std::uint64_t row_offset, std::uint64_t rows, const void* data,
                      Dtype dtype) {
  const LibraryLock lock(library_mutex());
  const std::string context = where(dataset);
  static const char kNothing = 0;
  transfer(prepare_rows(handle_.id(), dataset, row_offset, rows, parallel_, context), dtype,
           rows == 0 ? &kNothing : data, nullptr, rows == 0, context);
}

void File::read_rows(const std::string& dataset, std::uint64_t row_offset, std::uint64_t rows, void* data,
                     Dtype dtype) const {
  const LibraryLock lock(library_mutex());
  const std::string context = where(dataset);
  static char nothing = 0;
  transfer(prepare_rows(handle_.id(), dataset, row_offset, rows, parallel_, context), dtype, nullptr,
           rows == 0 ? &nothing : data, rows == 0, context);
}

void File::write_block(const std::string& dataset, const std::vector<std::uint64_t>& start,
                       const std::vector<std::uint64_t>& count, const void* data, Dtype dtype) {
  // A large block goes in pieces of whole rows of the dataset's first dimension, each under
  // its own hold of the library lock, so that a thread waiting to read (the training
  // thread while the asynchronous writer saves) waits for one piece, not a whole tensor.
  // Every rank of a parallel file cuts the same pieces, from the dataset's global shape, as
  // collective I/O requires (a rank whose block misses a piece writes nothing in it).
  std::vector<std::uint64_t> dims;
  {
    const LibraryLock lock(library_mutex());
    dims = dataset_info(dataset).shape;
  }
  if (dims.empty()) dims.push_back(1);
  const std::uint64_t row_bytes = DatasetInfo{dtype, dims}.row_elements() * size_of(dtype);
  const std::uint64_t piece_rows = std::max<std::uint64_t>(1, kWritePieceBytes / std::max<std::uint64_t>(row_bytes, 1));
  const bool none = data == nullptr || start.empty();
  const std::uint64_t block_begin = none ? 0 : start[0];
  const std::uint64_t block_end = none ? 0 : start[0] + count[0];
  const std::uint64_t block_row_bytes = none ? 0 : DatasetInfo{dtype, count}.row_elements() * size_of(dtype);
  for (std::uint64_t piece = 0; piece < dims[0] || piece == 0; piece += piece_rows) {
    const std::uint64_t begin = std::max(piece, block_begin);
    const std::uint64_t end = std::min(piece + piece_rows, block_end);
    std::vector<std::uint64_t> piece_start(start), piece_count(count);
    const bool empty = none || end <= begin;
    if (!empty) {
      piece_start[0] = begin;
      piece_count[0] = end - begin;
    }
    const auto* bytes = static_cast<const char*>(data);
    write_piece(dataset, piece_start, piece_count, empty ? nullptr : bytes + (begin - block_begin) * block_row_bytes,
                dtype);
    if (piece + piece_rows < dims[0]) std::this_thread::yield();  // let a waiting thread take the lock
  }
}

void File::write_piece(const std::string& dataset, const std::vector<std::uint64_t>& start,
                       const std::vector<std::uint64_t>& count, const void* data, Dtype dtype) {
  const LibraryLock lock(library_mutex());
  const std::string context = where(dataset);
  static const char kNothing = 0;
  const bool none = data == nullptr;
  transfer(prepare_block(handle_.id(), dataset, {start.begin(), start.end()}, {count.begin(), count.end()}, none,
                         parallel_, context),
           dtype, none ? &kNothing : data, nullptr, none, context);
}

void File::read_block(const std::string& dataset, const std::vector<std::uint64_t>& start,
                      const std::vector<std::uint64_t>& count, void* data, Dtype dtype) const {
  const LibraryLock lock(library_mutex());
  const std::string context = where(dataset);
  static char nothing = 0;
  const bool none = data == nullptr;
  transfer(prepare_block(handle_.id(), dataset, {start.begin(), start.end()}, {count.begin(), count.end()}, none,
                         parallel_, context),
           dtype, nullptr, none ? &nothing : data, none, context);
}

}  // namespace cord::h5
