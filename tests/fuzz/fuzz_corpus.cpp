// libFuzzer target: a corpus file (HDF5 image in memory): open and validate it, read every
// item's features, and verify its checksums, as `cord corpus inspect` and `verify` do.
// Afterwards no HDF5 object may be left open: a handle lost on an error path keeps its file
// (and its memory) alive for the rest of the process.
#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "cord/core/error.hpp"
#include "cord/data/corpus.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using cord::data::CorpusReader;
  for (const auto mode : {CorpusReader::Open::kChecked, CorpusReader::Open::kForVerify}) {
    try {
      const CorpusReader corpus = CorpusReader::from_image(data, size, "fuzz.h5", mode);
      if (mode == CorpusReader::Open::kChecked) {
        corpus.check_features_finite();
      } else {
        (void)corpus.verify();
      }
    } catch (const cord::Error&) {  // UsageError and the reader's Error: a refused file
    }
    const ssize_t open_objects = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_objects != 0) {
      std::fprintf(stderr, "fuzz_corpus: %zd HDF5 objects left open (files %zd, datasets %zd, groups %zd, "
                   "datatypes %zd, attributes %zd)\n", open_objects, H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE),
                   H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_DATASET), H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_GROUP),
                   H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_DATATYPE), H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ATTR));
      std::abort();
    }
  }
  return 0;
}
