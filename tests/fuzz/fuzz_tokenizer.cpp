// libFuzzer target: tokenizer.json (BpeTokenizer::from_json), then a round trip of a fixed
// text through the tokenizer it built.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cord/core/error.hpp"
#include "cord/hf/bpe_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const cord::hf::BpeTokenizer tokenizer = cord::hf::BpeTokenizer::from_json(text, "fuzz/tokenizer.json");
    const auto ids = tokenizer.encode("What is 12 plus 7? The answer is 19.");
    (void)tokenizer.decode(ids);
  } catch (const cord::Error&) {  // a refusal with a message (UsageError included)
  }
  return 0;
}
