#include "cord/data/problems.hpp"

#include <algorithm>


#include "cord/core/error.hpp"
#include "cord/data/rng.hpp"

namespace cord::data {
namespace {

// --- word lists ---------------------------------------------------------------------
// Names are single capitalised words without apostrophes, so they tokenise as one word.
const std::vector<std::string> kNames = {
    "Ada",   "Ben",   "Cara",  "Dan",   "Eva",   "Finn",  "Gina",  "Hugo",  "Ida",   "Jon",   "Kira",
    "Leo",   "Mia",   "Nils",  "Olga",  "Paul",  "Rosa",  "Sam",   "Tara",  "Ugo",   "Vera",  "Will",
    "Yara",  "Zack",  "Alma",  "Bruno", "Cleo",  "Dora",  "Emil",  "Flora", "Gus",   "Hana",  "Igor",
    "Jade",  "Karl",  "Lena",  "Max",   "Nora",  "Omar",  "Pia",   "Raul",  "Sofia", "Theo",  "Una",
    "Vito",  "Wendy", "Xavi",  "Yusuf", "Zoe",   "Arne",  "Bella", "Cyril", "Dina",  "Elsa",  "Felix",
    "Greta", "Henri", "Iris",  "Jasper", "Kai",  "Luca",  "Maya",  "Nico",  "Otto"};
const std::vector<std::string> kObjects = {"apples", "marbles", "stickers", "coins",  "books",
                                           "pencils", "cards",  "shells",   "stamps", "cookies"};
const std::vector<std::string> kColours = {"red", "blue", "green", "yellow", "purple", "orange", "black", "white"};
const std::vector<std::string> kCities = {"Paris", "Oslo",  "Lima",  "Cairo",
                                          "Tokyo", "Rome",  "Dublin", "Madrid"};
const std::vector<std::string> kPets = {"cat", "dog", "rabbit", "parrot", "hamster", "turtle", "horse", "goat"};
const std::vector<std::string> kLetters = {"A", "B", "C", "D"};

// --- wordings (many per question type: a held-out wording must not be the skill) ------
const std::vector<std::string> kStartWordings = {
    "{name} has {n} {obj}.", "{name} starts with {n} {obj}.", "{name} owns {n} {obj}.",
    "At first, {name} has {n} {obj}.", "{name} collected {n} {obj}.", "In the morning {name} has {n} {obj}."};
const std::vector<std::string> kAddWordings = {
    "Then {name} buys {n} more {obj}.", "{name} finds {n} more {obj}.", "Then {name} gets {n} more {obj}.",
    "A friend gives {name} {n} more {obj}.", "{name} wins {n} more {obj}.", "Later {name} receives {n} more {obj}."};
const std::vector<std::string> kSubWordings = {
    "Then {name} gives {n} {obj} away.", "{name} loses {n} {obj}.", "Then {name} sells {n} of the {obj}.",
    "{name} uses {n} {obj}.", "{name} gives {n} {obj} to a friend.", "Later {name} eats {n} of the {obj}."};
const std::vector<std::string> kArithmeticQuestions = {
    "How many {obj} does {name} have now?", "How many {obj} does {name} have in the end?",
    "What is the number of {obj} that {name} has now?", "Now how many {obj} does {name} have?",
    "How many {obj} are left with {name}?"};

const std::vector<std::string> kColourQuestions = {
    "Which colour does {name} like?", "What is the favourite colour of {name}?",
    "What colour does {name} like best?", "{name} has a favourite colour. Which one is it?",
    "Which colour is the one {name} likes?"};
const std::vector<std::string> kCityQuestions = {
    "Where does {name} live?", "In which city does {name} live?", "Which city is home to {name}?",
    "{name} lives in a city. Which city is it?", "What is the home city of {name}?"};
const std::vector<std::string> kPetQuestions = {
    "Which animal does {name} keep as a pet?", "What pet does {name} have?", "What kind of pet does {name} own?",
    "{name} has a pet. Which animal is it?", "Which pet lives with {name}?"};
const std::vector<std::string> kOlderQuestions = {
    "Who is older, {a} or {b}?", "Which of the two is older: {a} or {b}?", "Of {a} and {b}, who is older?",
    "Who was born first, {a} or {b}?"};
const std::vector<std::string> kYoungerQuestions = {
    "Who is younger, {a} or {b}?", "Which of the two is younger: {a} or {b}?", "Of {a} and {b}, who is younger?",
    "Who was born last, {a} or {b}?"};

// Ordering: comparative pairs and superlatives of one quality.
struct Quality {
  const char* key;
  const char* more;       // "taller"
  const char* less;       // "shorter"
  const char* most;       // "tallest"
  const char* least;      // "shortest"
};
const std::vector<Quality> kQualities = {{"height", "taller", "shorter", "tallest", "shortest"},
                                         {"age", "older", "younger", "oldest", "youngest"},
                                         {"speed", "faster", "slower", "fastest", "slowest"},
                                         {"weight", "heavier", "lighter", "heaviest", "lightest"}};
const std::vector<std::string> kOrderingQuestions = {"Who is the {sup}?", "Which of them is the {sup}?",
                                                     "Who is the {sup} of all?", "Name the {sup} one."};

// Replaces every "{key}" of `pattern`.
std::string fill(std::string pattern, const std::vector<std::pair<std::string, std::string>>& values) {
  for (const auto& [key, value] : values) {
    const std::string placeholder = "{" + key + "}";
    for (std::size_t at = pattern.find(placeholder); at != std::string::npos;
         at = pattern.find(placeholder, at + value.size())) {
      pattern.replace(at, placeholder.size(), value);
    }
  }
  return pattern;
}

std::string answer_line(const std::string& answer) { return "The answer is " + answer + "."; }

}  // namespace

const char* family_name(Family family) {
  switch (family) {
    case Family::kArithmetic: return "arithmetic";
    case Family::kMultipleChoice: return "multiple_choice";
    case Family::kOrdering: return "ordering";
  }
  return "?";
}

Family parse_family(const std::string& name, const std::string& what) {
  for (int f = 0; f < kFamilyCount; ++f) {
    if (name == family_name(static_cast<Family>(f))) return static_cast<Family>(f);
  }
  throw UsageError(what + ": unknown family '" + name + "' (known: arithmetic, multiple_choice, ordering)");
}

const char* split_name(Split split) {
  switch (split) {
    case Split::kTrain: return "train";
    case Split::kValidation: return "validation";
    case Split::kTest: return "test";
  }
  return "?";
}

Split parse_split(const std::string& name, const std::string& what) {
  for (int s = 0; s < kSplitCount; ++s) {
    if (name == split_name(static_cast<Split>(s))) return static_cast<Split>(s);
  }
  throw UsageError(what + ": unknown split '" + name + "' (known: train, validation, test)");
}

ProblemGenerator::ProblemGenerator(const CorpusConfig& config) : config_(config) {
  for (const std::string& name : split_comma_list(config.families)) {
    families_.push_back(parse_family(name, "corpus.families"));
  }
  if (families_.empty()) throw UsageError("corpus.families lists no family");
  CORD_CHECK(config.entities >= 2 && config.entities <= static_cast<int>(kNames.size()),
             "corpus.entities out of range");
  // The fact base: a seed-chosen subset of the names, each with its own attribute draws.
  std::vector<std::string> names = kNames;
  Rng name_rng(derive_seed(static_cast<std::uint64_t>(config.seed), Stream::kFacts, 0));
  name_rng.shuffle(names);
  for (int e = 0; e < config.entities; ++e) {
    Rng rng(derive_seed(static_cast<std::uint64_t>(config.seed), Stream::kFacts, static_cast<std::uint64_t>(e) + 1));
    Person p;
    p.name = names[static_cast<std::size_t>(e)];
    p.colour = rng.pick(kColours);
    p.city = rng.pick(kCities);
    p.pet = rng.pick(kPets);
    p.age = static_cast<int>(rng.uniform(18, 80));
    people_.push_back(p);
  }
}

Split ProblemGenerator::split_of(const std::string& content_key) const {
  // Uniform in [0, 1) from the content alone (and the seed), never from the wording.
  const std::uint64_t h = mix64(hash_text(content_key) ^ mix64(static_cast<std::uint64_t>(config_.seed)));
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  if (u < config_.test_fraction) return Split::kTest;
  if (u < config_.test_fraction + config_.validation_fraction) return Split::kValidation;
  return Split::kTrain;
}

Problem ProblemGenerator::generate(std::int64_t index) const {
  CORD_CHECK(index >= 0, "problem index must be >= 0");
  const Family family = families_[static_cast<std::size_t>(index % static_cast<std::int64_t>(families_.size()))];
  Problem p;
  switch (family) {
    case Family::kArithmetic: p = arithmetic(index); break;
    case Family::kMultipleChoice: p = multiple_choice(index); break;
    case Family::kOrdering: p = ordering(index); break;
  }
  p.index = index;
  p.family = family;
  p.split = split_of(p.content_key);
  return p;
}

Problem ProblemGenerator::arithmetic(std::int64_t index) const {
  Rng rng(derive_seed(static_cast<std::uint64_t>(config_.seed), Stream::kProblem, static_cast<std::uint64_t>(index)));
  const int top = config_.max_number - 1;  // every number stays in [0, top]
  const int steps = static_cast<int>(rng.uniform(config_.min_steps, config_.max_steps));
  const std::string& name = rng.pick(kNames);
  const std::string& obj = rng.pick(kObjects);
  int value = static_cast<int>(rng.uniform(1, top));
  const int start = value;

  std::string question = fill(rng.pick(kStartWordings), {{"name", name}, {"n", std::to_string(value)}, {"obj", obj}});
  std::string solution = name + " starts with " + std::to_string(value) + " " + obj + ".";
  std::string key = "arithmetic|" + std::to_string(start);
  for (int s = 0; s < steps; ++s) {
    // Add when subtracting is impossible (nothing left) or by a coin flip while adding fits.
    const bool add = value == 0 || (value < top && rng.uniform(0, 1) == 0);
    const int operand = add ? static_cast<int>(rng.uniform(1, top - value)) : static_cast<int>(rng.uniform(1, value));
    const int result = add ? value + operand : value - operand;
    question += " " + fill(rng.pick(add ? kAddWordings : kSubWordings),
                           {{"name", name}, {"n", std::to_string(operand)}, {"obj", obj}});
    solution += " " + std::to_string(value) + (add ? " + " : " - ") + std::to_string(operand) + " = " +
                std::to_string(result) + ".";
    key += (add ? "+" : "-") + std::to_string(operand);
    value = result;
  }
  question += " " + fill(rng.pick(kArithmeticQuestions), {{"name", name}, {"obj", obj}});
  Problem p;
  p.difficulty = steps;
  p.question = question;
  p.answer = std::to_string(value);
  p.solution = solution + " " + answer_line(p.answer);
  p.content_key = key;
  return p;
}

Problem ProblemGenerator::multiple_choice(std::int64_t index) const {
  Rng rng(derive_seed(static_cast<std::uint64_t>(config_.seed), Stream::kProblem, static_cast<std::uint64_t>(index)));
  const int kind = static_cast<int>(rng.uniform(0, 3));  // 0 colour, 1 city, 2 pet, 3 age comparison
  const Person& person = rng.pick(people_);
  Problem p;
  if (kind < 3) {
    const std::vector<std::string>& values = kind == 0 ? kColours : kind == 1 ? kCities : kPets;
    const std::string& truth = kind == 0 ? person.colour : kind == 1 ? person.city : person.pet;
    std::vector<std::string> options = {truth};
    while (options.size() < 4) {
      const std::string& candidate = rng.pick(values);
      if (std::find(options.begin(), options.end(), candidate) == options.end()) options.push_back(candidate);
    }
    rng.shuffle(options);
    const auto& wordings = kind == 0 ? kColourQuestions : kind == 1 ? kCityQuestions : kPetQuestions;
    p.question = fill(rng.pick(wordings), {{"name", person.name}});
    for (std::size_t o = 0; o < options.size(); ++o) p.question += " " + kLetters[o] + ": " + options[o] + ".";
    const std::string fact = kind == 0   ? person.name + " likes " + truth + "."
                             : kind == 1 ? person.name + " lives in " + truth + "."
                                         : person.name + " keeps a " + truth + " as a pet.";
    p.answer = truth;
    p.solution = fact + " " + answer_line(truth);
    p.difficulty = 1;
    std::vector<std::string> sorted_options = options;
    std::sort(sorted_options.begin(), sorted_options.end());
    p.content_key = "multiple_choice|" + std::to_string(kind) + "|" + person.name;
    for (const std::string& o : sorted_options) p.content_key += "|" + o;
    return p;
  }
  const Person* other = &rng.pick(people_);
  while (other->name == person.name || other->age == person.age) other = &rng.pick(people_);
  const bool ask_older = rng.uniform(0, 1) == 0;
  const bool person_first = rng.uniform(0, 1) == 0;
  const Person& a = person_first ? person : *other;
  const Person& b = person_first ? *other : person;
  const Person& older = a.age > b.age ? a : b;
  const Person& younger = a.age > b.age ? b : a;
  p.question = fill(rng.pick(ask_older ? kOlderQuestions : kYoungerQuestions), {{"a", a.name}, {"b", b.name}}) +
               " A: " + a.name + ". B: " + b.name + ".";
  p.answer = ask_older ? older.name : younger.name;
  p.solution = a.name + " is " + std::to_string(a.age) + " years old. " + b.name + " is " + std::to_string(b.age) +
               " years old. " + answer_line(p.answer);
  p.difficulty = 2;
  const bool sorted = a.name < b.name;
  p.content_key = std::string("multiple_choice|age|") + (ask_older ? "older|" : "younger|") +
                  (sorted ? a.name + "|" + b.name : b.name + "|" + a.name);
  return p;
}

Problem ProblemGenerator::ordering(std::int64_t index) const {
  Rng rng(derive_seed(static_cast<std::uint64_t>(config_.seed), Stream::kProblem, static_cast<std::uint64_t>(index)));
  const int count = static_cast<int>(rng.uniform(3, 4));
  std::vector<std::string> ranking;  // most -> least
  while (static_cast<int>(ranking.size()) < count) {
    const std::string& name = rng.pick(kNames);
    if (std::find(ranking.begin(), ranking.end(), name) == ranking.end()) ranking.push_back(name);
  }
  const Quality& q = kQualities[static_cast<std::size_t>(rng.uniform(0, static_cast<std::int64_t>(kQualities.size()) - 1))];
  // One statement per adjacent pair, phrased either way round, presented shuffled.
  std::vector<std::string> statements;
  for (int i = 0; i + 1 < count; ++i) {
    const std::string& hi = ranking[static_cast<std::size_t>(i)];
    const std::string& lo = ranking[static_cast<std::size_t>(i) + 1];
    statements.push_back(rng.uniform(0, 1) == 0 ? hi + " is " + q.more + " than " + lo + "."
                                                : lo + " is " + q.less + " than " + hi + ".");
  }
  rng.shuffle(statements);
  const bool ask_most = rng.uniform(0, 1) == 0;
  Problem p;
  for (const std::string& s : statements) p.question += (p.question.empty() ? "" : " ") + s;
  p.question += " " + fill(rng.pick(kOrderingQuestions), {{"sup", ask_most ? q.most : q.least}});
  for (int i = 0; i + 1 < count; ++i) {
    p.solution += ranking[static_cast<std::size_t>(i)] + " is " + q.more + " than " +
                  ranking[static_cast<std::size_t>(i) + 1] + ". ";
  }
  p.solution += std::string("So from the ") + q.most + " to the " + q.least + " the order is ";
  for (int i = 0; i < count; ++i) p.solution += (i == 0 ? "" : ", ") + ranking[static_cast<std::size_t>(i)];
  p.answer = ask_most ? ranking.front() : ranking.back();
  p.solution += ". " + answer_line(p.answer);
  p.difficulty = count - 2;
  p.content_key = std::string("ordering|") + q.key + (ask_most ? "|most" : "|least");
  for (const std::string& name : ranking) p.content_key += "|" + name;
  return p;
}

std::vector<std::string> ProblemGenerator::lexicon_texts() {
  std::vector<std::string> texts;
  auto add_all = [&texts](const std::vector<std::string>& list) { texts.insert(texts.end(), list.begin(), list.end()); };
  for (const auto* list : {&kNames, &kObjects, &kColours, &kCities, &kPets, &kLetters, &kStartWordings,
                           &kAddWordings, &kSubWordings, &kArithmeticQuestions, &kColourQuestions, &kCityQuestions,
                           &kPetQuestions, &kOlderQuestions, &kYoungerQuestions, &kOrderingQuestions}) {
    add_all(*list);
  }
  for (const Quality& q : kQualities) texts.insert(texts.end(), {q.more, q.less, q.most, q.least});
  // Fixed phrases of the solutions.
  texts.insert(texts.end(), {"starts with", "The answer is", "likes", "lives in", "keeps a as a pet",
                             "is years old", "is than", "So from the to the the order is", "+ - = . , : ?"});
  // Placeholders are not words.
  for (std::string& t : texts) {
    for (std::size_t open = t.find('{'); open != std::string::npos; open = t.find('{')) {
      t.replace(open, t.find('}', open) - open + 1, " ");
    }
  }
  return texts;
}

std::string parse_answer_line(const std::string& solution) {
  static const std::string kPrefix = "The answer is ";
  const std::size_t at = solution.rfind(kPrefix);
  if (at == std::string::npos || solution.empty() || solution.back() != '.') return "";
  if (at != 0 && solution[at - 1] != ' ') return "";
  const std::size_t begin = at + kPrefix.size();
  if (begin >= solution.size() - 1) return "";
  return solution.substr(begin, solution.size() - 1 - begin);
}

}  // namespace cord::data
