// cord-hf-tokenize: runs cord::hf::BpeTokenizer over a file of requests, for
// tests/hf/tokenizer_oracle.py, which compares the results with the `tokenizers` library.
//
//   cord-hf-tokenize TOKENIZER_JSON REQUESTS_JSONL RESULTS_JSONL
//
// One JSON object per line in, one per line out, in the same order:
//   {"text": S, "add_special_tokens": B}  ->  {"ids": [...], "decoded": decode(ids),
//                                              "decoded_skip": decode(ids, skip_special_tokens)}
//   {"ids": [...], "skip_special_tokens": B}  ->  {"decoded": decode(ids, B)}
// ("add_special_tokens" and "skip_special_tokens" default to false.)
// Exit status: 0; 2 with the message on stderr for a tokenizer.json that cord refuses (a
// cord::UsageError); 1 for anything else, such as a malformed request.
#include <cstdint>
#include <exception>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cord/core/error.hpp"
#include "cord/hf/bpe_tokenizer.hpp"

namespace {

using json = nlohmann::json;

json answer(const cord::hf::BpeTokenizer& tokenizer, const json& request) {
  if (request.contains("text")) {
    const std::vector<int32_t> ids =
        tokenizer.encode(request.at("text").get<std::string>(), request.value("add_special_tokens", false));
    return {{"ids", ids}, {"decoded", tokenizer.decode(ids)}, {"decoded_skip", tokenizer.decode(ids, true)}};
  }
  const std::vector<int32_t> ids = request.at("ids").get<std::vector<int32_t>>();
  return {{"decoded", tokenizer.decode(ids, request.value("skip_special_tokens", false))}};
}

int run(const std::string& tokenizer_path, const std::string& requests_path, const std::string& results_path) {
  const cord::hf::BpeTokenizer tokenizer = cord::hf::BpeTokenizer::from_file(tokenizer_path);
  std::ifstream requests(requests_path);
  if (!requests) throw std::runtime_error("cannot read " + requests_path);
  std::ofstream results(results_path);
  if (!results) throw std::runtime_error("cannot write " + results_path);
  std::string line;
  for (int line_number = 1; std::getline(requests, line); ++line_number) {
    try {
      results << answer(tokenizer, json::parse(line)).dump() << '\n';
    } catch (const std::exception& e) {
      throw std::runtime_error(requests_path + " line " + std::to_string(line_number) + ": " + e.what());
    }
  }
  results.flush();
  if (!results) throw std::runtime_error("cannot write " + results_path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: cord-hf-tokenize TOKENIZER_JSON REQUESTS_JSONL RESULTS_JSONL\n";
    return 1;
  }
  try {
    return run(argv[1], argv[2], argv[3]);
  } catch (const cord::UsageError& e) {
    std::cerr << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "cord-hf-tokenize: " << e.what() << '\n';
    return 1;
  }
}
