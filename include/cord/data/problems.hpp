#pragma once
// Problem generators of the synthetic spoken-reasoning corpus: three families that
// mirror the paper's benchmarks, each problem a question, a step-by-step solution that
// ends in one canonical answer line ("The answer is 42."), the answer, family,
// difficulty and split.
//   arithmetic       multi-step +/- word problems (GSM8K-like); difficulty = steps
//   multiple_choice  questions with listed options over a generated fact base of people
//                    and their colour, city, pet and age (OBQA/MMSU-like): recall and
//                    comparison; the answer line carries the option's value, not its letter
//                    (docs/corpus.md, "Problems": small models learn facts, not letter mapping)
//   ordering         transitive comparisons ("Ana is taller than Ben. ..."); who is the
//                    tallest/shortest; difficulty = people - 2
// Problem i is a function of (config, i) only. Its split is a function of the problem's
// *content* (numbers and operations, fact and options, ranking), never its wording, so a
// question never appears in two splits under different wordings.
#include <cstdint>
#include <string>
#include <vector>

#include "cord/config/config.hpp"

namespace cord::data {

enum class Family : std::int8_t { kArithmetic = 0, kMultipleChoice = 1, kOrdering = 2 };
inline constexpr int kFamilyCount = 3;
const char* family_name(Family family);  // "arithmetic", "multiple_choice", "ordering"
// Throws UsageError naming `what` (e.g. "corpus.families") for an unknown name.
Family parse_family(const std::string& name, const std::string& what);

enum class Split : std::int8_t { kTrain = 0, kValidation = 1, kTest = 2 };
inline constexpr int kSplitCount = 3;
const char* split_name(Split split);  // "train", "validation", "test"
Split parse_split(const std::string& name, const std::string& what);

struct Problem {
  std::int64_t index = 0;
  Family family = Family::kArithmetic;
  int difficulty = 1;
  std::string question;     // what is asked (and spoken)
  std::string solution;     // steps, then "The answer is <answer>."
  std::string answer;       // the answer's content: a number, a colour, a name, ...
  Split split = Split::kTrain;
  std::string content_key;  // what makes two problems "the same question" (wording excluded)
};

// One fact of the fact base: person `name` likes `colour`, lives in `city`, keeps `pet`, is `age`.
struct Person {
  std::string name, colour, city, pet;
  int age = 0;
};

class ProblemGenerator {
 public:
  // Throws UsageError for unknown family names in config.families.
  explicit ProblemGenerator(const CorpusConfig& config);

  Problem generate(std::int64_t index) const;

  const std::vector<Person>& fact_base() const { return people_; }
  const std::vector<Family>& families() const { return families_; }

  // Every word, name and punctuation mark a generator can emit (the tokenizer's closed
  // vocabulary is derived from it), independent of the config.
  static std::vector<std::string> lexicon_texts();

 private:
  Problem arithmetic(std::int64_t index) const;
  Problem multiple_choice(std::int64_t index) const;
  Problem ordering(std::int64_t index) const;
  Split split_of(const std::string& content_key) const;

  CorpusConfig config_;
  std::vector<Family> families_;
  std::vector<Person> people_;
};

// The final answer of a solution: the text between the last "The answer is " and the
// final ".", or "" when the solution does not end in a canonical answer line.
std::string parse_answer_line(const std::string& solution);

}  // namespace cord::data
