// libFuzzer target: a corpus file (HDF5 image in memory): open and validate it, read every
// item's features, and verify its checksums, as `cord corpus inspect` and `verify` do.
// Afterwards no HDF5 object may be left open.
#include <cstddef>
#include <cstdint>

#include "cord/core/error.hpp"
#include "cord/data/corpus.hpp"
#include "fuzz_support.hpp"

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
    cord::fuzz::abort_if_hdf5_objects_open("fuzz_corpus");
  }
  return 0;
}
