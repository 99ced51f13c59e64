#pragma once
// What the HDF5 fuzz targets share: the check that no HDF5 object outlives an input; for the
// readers that take a path, the input written to a file of this process; the MPI fixture of
// the checkpoint and weights targets; and the seed tests' check that a valid seed loads.
#include <hdf5.h>
#include <sanitizer/lsan_interface.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace cord::fuzz {

// Aborts (a finding) when cord left an HDF5 object open: a handle lost on an error path
// keeps its file, and its memory, alive for the rest of the process.
inline void abort_if_hdf5_objects_open(const char* target) {
  const ssize_t open_objects = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (open_objects == 0) return;
  std::fprintf(stderr, "%s: %zd HDF5 objects left open (files %zd, datasets %zd, groups %zd, datatypes %zd, "
               "attributes %zd)\n", target, open_objects, H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE),
               H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_DATASET), H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_GROUP),
               H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_DATATYPE), H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ATTR));
  std::abort();
}

// A file of this process in memory-backed /dev/shm (else /tmp), rewritten for every input:
// the checkpoint and weights readers open a path, as cord does.
inline const std::string& input_path(const char* target) {
  static const std::string path = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/" + target +
                                  "_" + std::to_string(getpid()) + ".h5";
  return path;
}

inline const std::string& write_input(const char* target, const std::uint8_t* data, std::size_t size) {
  const std::string& path = input_path(target);
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr || std::fwrite(data, 1, size, file) != size || std::fclose(file) != 0) {
    std::perror(path.c_str());
    std::abort();  // the harness cannot run: not a finding in cord, but never silently skipped
  }
  return path;
}

// The process-wide fixture of a target that starts MPI (fuzz_checkpoint, fuzz_weights), made
// once from LLVMFuzzerInitialize: Fixture(argc, argv). Open MPI loses track of some of what
// MPI_Init and communicator creation allocate, so LeakSanitizer would report it at the first
// leak check; the fixture's set-up is exempt, every input's allocations are checked. The
// target's input file is removed at exit.
template <typename Fixture>
Fixture* start_fixture(const char* target, int* argc, char*** argv) {
  __lsan_disable();
  static Fixture instance(argc, argv);
  __lsan_enable();
  static const std::string* path = &input_path(target);
  std::atexit([] { unlink(path->c_str()); });
  return &instance;
}

// CORD_FUZZ_EXPECT_VALID=1 (the seed tests): a refusal of the input is a failure, so that a
// seed the current code no longer accepts is noticed instead of fuzzing only error paths.
inline void abort_if_expected_valid(const char* target, const std::string& why) {
  const char* expect = std::getenv("CORD_FUZZ_EXPECT_VALID");
  if (expect == nullptr || std::string(expect) != "1") return;
  std::fprintf(stderr, "%s: a valid seed was refused: %s\n", target, why.c_str());
  std::abort();
}

}  // namespace cord::fuzz
