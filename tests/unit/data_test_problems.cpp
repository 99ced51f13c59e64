// Problem generators and tokenizer: answers are right, answer lines parse, splits are
// disjoint by content, generation is a function of (seed, index), text round-trips.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>

#include "cord/data/problems.hpp"
#include "cord/data/speech.hpp"
#include "cord/data/tokenizer.hpp"
#include "data_test_util.hpp"

namespace cord::data {
namespace {

using testing::error_of;
using testing::small_config;

constexpr int kItems = 3000;

std::vector<Problem> generate_all(const CorpusConfig& config, int n) {
  const ProblemGenerator generator(config);
  std::vector<Problem> problems;
  for (int i = 0; i < n; ++i) problems.push_back(generator.generate(i));
  return problems;
}

TEST(Problems, ArithmeticAnswersFollowFromTheSolutionSteps) {
  CorpusConfig config = small_config();
  config.families = "arithmetic";
  const std::regex step(R"((\d+) ([+-]) (\d+) = (\d+)\.)");
  for (const Problem& p : generate_all(config, kItems)) {
    int previous = -1, steps = 0;
    for (auto it = std::sregex_iterator(p.solution.begin(), p.solution.end(), step); it != std::sregex_iterator(); ++it) {
      const int a = std::stoi((*it)[1]), b = std::stoi((*it)[3]), c = std::stoi((*it)[4]);
      EXPECT_EQ((*it)[2] == "+" ? a + b : a - b, c) << p.solution;
      if (previous >= 0) {
        EXPECT_EQ(a, previous) << "steps must chain: " << p.solution;
      }
      for (const int v : {a, b, c}) {
        EXPECT_GE(v, 0) << p.solution;
        EXPECT_LT(v, config.max_number) << p.solution;
      }
      previous = c;
      ++steps;
    }
    EXPECT_EQ(steps, p.difficulty) << p.solution;
    EXPECT_GE(steps, config.min_steps);
    EXPECT_LE(steps, config.max_steps);
    EXPECT_EQ(std::to_string(previous), p.answer) << p.solution;
  }
}

TEST(Problems, MultipleChoiceAnswerIsAListedOptionAndTheStatedFact) {
  CorpusConfig config = small_config();
  config.families = "multiple_choice";
  const ProblemGenerator generator(config);
  std::map<std::string, const Person*> people;
  for (const Person& p : generator.fact_base()) people[p.name] = &p;
  EXPECT_EQ(static_cast<int>(people.size()), config.entities);
  for (int i = 0; i < kItems; ++i) {
    const Problem p = generator.generate(i);
    const std::regex option(R"(([A-D]): ([A-Za-z]+)\.)");
    std::vector<std::string> options;
    for (auto it = std::sregex_iterator(p.question.begin(), p.question.end(), option); it != std::sregex_iterator(); ++it) {
      options.push_back((*it)[2]);
    }
    ASSERT_GE(options.size(), 2u) << p.question;
    EXPECT_EQ(std::count(options.begin(), options.end(), p.answer), 1) << p.question;
    // The answer agrees with the fact base: recall names the person's value, comparison the older/younger one.
    const std::string first_word = p.solution.substr(0, p.solution.find(' '));
    ASSERT_TRUE(people.count(first_word)) << p.solution;
    if (p.difficulty == 1) {
      const Person& who = *people[first_word];
      EXPECT_TRUE(p.answer == who.colour || p.answer == who.city || p.answer == who.pet) << p.solution;
    } else {
      const Person& a = *people[options[0]];
      const Person& b = *people[options[1]];
      const bool older = p.question.find("older") != std::string::npos || p.question.find("born first") != std::string::npos;
      EXPECT_EQ(p.answer, (a.age > b.age) == older ? a.name : b.name) << p.question << " / " << p.solution;
    }
  }
}

TEST(Problems, OrderingAnswerIsTheExtremeOfTheStatedChain) {
  CorpusConfig config = small_config();
  config.families = "ordering";
  const std::regex comparison(R"(([A-Z][a-z]+) is ([a-z]+) than ([A-Z][a-z]+)\.)");
  const std::map<std::string, bool> more = {{"taller", true},  {"shorter", false}, {"older", true},   {"younger", false},
                                            {"faster", true},  {"slower", false},  {"heavier", true}, {"lighter", false}};
  for (const Problem& p : generate_all(config, kItems)) {
    // Count how many people each person beats, from the question's statements only.
    std::map<std::string, std::set<std::string>> beats;
    const std::string statements = p.question.substr(0, p.question.rfind('.') + 1);
    for (auto it = std::sregex_iterator(statements.begin(), statements.end(), comparison); it != std::sregex_iterator(); ++it) {
      const bool is_more = more.at((*it)[2]);
      beats[is_more ? (*it)[1].str() : (*it)[3].str()].insert(is_more ? (*it)[3] : (*it)[1]);
      beats[is_more ? (*it)[3].str() : (*it)[1].str()];
    }
    // Transitive closure: the top beats everyone, the bottom no one.
    for (int round = 0; round < 4; ++round) {
      for (auto& [who, below] : beats) {
        std::set<std::string> more_below = below;
        for (const std::string& b : below) more_below.insert(beats[b].begin(), beats[b].end());
        below = more_below;
      }
    }
    const bool ask_most = p.question.find("tallest") != std::string::npos || p.question.find("oldest") != std::string::npos ||
                          p.question.find("fastest") != std::string::npos || p.question.find("heaviest") != std::string::npos;
    const std::size_t expected = ask_most ? beats.size() - 1 : 0;
    ASSERT_TRUE(beats.count(p.answer)) << p.question;
    EXPECT_EQ(beats[p.answer].size(), expected) << p.question << " / " << p.answer;
  }
}

TEST(Problems, EveryFamilyEndsInACanonicalAnswerLine) {
  std::set<Family> seen;
  for (const Problem& p : generate_all(small_config(), kItems)) {
    EXPECT_EQ(parse_answer_line(p.solution), p.answer) << p.solution;
    EXPECT_FALSE(p.answer.empty());
    seen.insert(p.family);
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(parse_answer_line("no answer here."), "");
  EXPECT_EQ(parse_answer_line("The answer is 42"), "");
  EXPECT_EQ(parse_answer_line("So. The answer is blue."), "blue");
}

TEST(Problems, SplitsAreDisjointByContentAndQuestion) {
  CorpusConfig config = small_config();
  config.validation_fraction = 0.1;
  config.test_fraction = 0.2;
  std::map<std::string, Split> split_of_key, split_of_question;
  std::map<Split, int> counts;
  for (const Problem& p : generate_all(config, kItems)) {
    const auto [key_it, new_key] = split_of_key.emplace(p.content_key, p.split);
    EXPECT_EQ(key_it->second, p.split) << "content " << p.content_key << " in two splits";
    const auto [question_it, new_question] = split_of_question.emplace(p.question, p.split);
    EXPECT_EQ(question_it->second, p.split) << "question in two splits: " << p.question;
    ++counts[p.split];
  }
  // Each split gets roughly its share (3000 items: far from the edges of these bounds).
  EXPECT_GT(counts[Split::kTrain], kItems * 0.6);
  EXPECT_GT(counts[Split::kValidation], kItems * 0.05);
  EXPECT_GT(counts[Split::kTest], kItems * 0.12);
}

TEST(Problems, FactsOfHeldOutQuestionsAreStatedInTraining) {
  // A multiple-choice question tests recall: its fact must be learnable from the text
  // training split, i.e. stated in some training solution.
  CorpusConfig config = small_config();
  config.families = "multiple_choice";
  std::set<std::string> train_statements;
  std::vector<std::string> held_out;
  for (const Problem& p : generate_all(config, kItems)) {
    const std::string fact = p.solution.substr(0, p.solution.find(" The answer is"));
    if (p.split == Split::kTrain) train_statements.insert(fact);
    else if (p.difficulty == 1) held_out.push_back(fact);
  }
  int covered = 0;
  for (const std::string& fact : held_out) covered += train_statements.count(fact) ? 1 : 0;
  ASSERT_FALSE(held_out.empty());
  EXPECT_GE(covered, static_cast<int>(held_out.size() * 0.95)) << covered << " of " << held_out.size();
}

TEST(Problems, ItemDependsOnSeedAndIndexOnly) {
  const ProblemGenerator a(small_config()), b(small_config());
  for (int i : {0, 1, 2, 57, 1000, 2999}) {
    // b generates in another order, after other items: no hidden state.
    b.generate(i + 1);
    EXPECT_EQ(a.generate(i).question, b.generate(i).question);
    EXPECT_EQ(a.generate(i).solution, b.generate(i).solution);
  }
  CorpusConfig other = small_config();
  other.seed = 12;
  int differing = 0;
  for (int i = 0; i < 30; ++i) differing += ProblemGenerator(other).generate(i).question != a.generate(i).question;
  EXPECT_GT(differing, 20);
}

TEST(Problems, UnknownFamilyIsAUsageError) {
  CorpusConfig config = small_config();
  config.families = "arithmetic,algebra";
  EXPECT_NE(error_of<UsageError>([&] { ProblemGenerator g(config); }).find("unknown family 'algebra'"), std::string::npos);
}

TEST(Tokenizer, EveryGeneratedTextRoundTripsExactly) {
  const Tokenizer tokenizer = Tokenizer::from_generators();
  for (const Problem& p : generate_all(small_config(), kItems)) {
    for (const std::string* text : {&p.question, &p.solution, &p.answer}) {
      const std::vector<std::int32_t> ids = tokenizer.encode(*text);
      EXPECT_EQ(tokenizer.decode(ids), *text);
    }
  }
}

TEST(Tokenizer, SpecialsDigitsAndVocabularyLayout) {
  const Tokenizer tokenizer = Tokenizer::from_generators();
  EXPECT_EQ(tokenizer.vocab()[Tokenizer::kPad], "<pad>");
  EXPECT_EQ(tokenizer.vocab()[Tokenizer::kSep], "<sep>");
  EXPECT_EQ(tokenizer.id("7"), 14);
  EXPECT_EQ(tokenizer.encode("123").size(), 3u);  // digits are separate tokens
  EXPECT_LT(tokenizer.size(), 400);
  const Tokenizer copy = Tokenizer::from_vocab(tokenizer.vocab(), "copy");
  EXPECT_EQ(copy.encode("The answer is 42."), tokenizer.encode("The answer is 42."));
}

TEST(Tokenizer, ErrorsNameTheWordOrTheProblem) {
  const Tokenizer tokenizer = Tokenizer::from_generators();
  EXPECT_NE(error_of<UsageError>([&] { tokenizer.encode("Mia has 3 zebras.", "line 4"); })
                .find("word 'zebras' is not in the vocabulary (line 4)"),
            std::string::npos);
  EXPECT_NE(error_of<UsageError>([&] { tokenizer.encode("Mia  has 3 apples."); }).find("canonical"), std::string::npos);
  EXPECT_NE(error_of<UsageError>([&] { tokenizer.encode("Mia has 3 apples;~"); }).find("'~'"), std::string::npos);
  EXPECT_NE(error_of<Error>([&] { Tokenizer::from_vocab({"a", "b"}, "f.h5"); }).find("f.h5"), std::string::npos);
  EXPECT_EQ(normalize_spacing("  Mia  has 3 apples .\tHow many ? "), "Mia has 3 apples. How many?");
}

TEST(Speech, SpokenFormReadsNumbersAndOptionLetters) {
  EXPECT_EQ(spoken_form("Mia has 23 apples.", false), "Mia has twenty three apples.");
  EXPECT_EQ(spoken_form("Mia has 23 apples.", true), "Mia has two three apples.");
  EXPECT_EQ(spoken_form("Which one? A: red. B: blue.", false), "Which one? option ay, red. option bee, blue.");
  EXPECT_EQ(spoken_form("7 + 5 = 12.", false), "seven plus five equals twelve.");
  EXPECT_EQ(number_in_words(0), "zero");
  EXPECT_EQ(number_in_words(105), "one hundred and five");
  EXPECT_EQ(number_in_words(20013), "twenty thousand and thirteen");
}

TEST(Speech, VoicesAreDrawnFromTheConfiguredLists) {
  CorpusConfig config = small_config();
  const std::vector<std::string> names = speaker_names(config);
  EXPECT_EQ(names.front(), "en-us");
  EXPECT_EQ(names[1], "en-us+m1");
  std::set<int> speakers;
  for (int i = 0; i < 200; ++i) {
    const Voice v = draw_voice(config, i);
    EXPECT_EQ(v.name, names[static_cast<std::size_t>(v.speaker)]);
    EXPECT_GE(v.rate, config.rate_min);
    EXPECT_LE(v.rate, config.rate_max);
    EXPECT_GE(v.pitch, config.pitch_min);
    EXPECT_LE(v.pitch, config.pitch_max);
    EXPECT_EQ(v.name, draw_voice(config, i).name);
    speakers.insert(v.speaker);
  }
  EXPECT_GT(speakers.size(), 20u);  // many speakers
}

}  // namespace
}  // namespace cord::data
