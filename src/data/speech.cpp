#include "cord/data/speech.hpp"

#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>


#include "cord/core/error.hpp"
#include "cord/data/rng.hpp"
#include "socket_io.hpp"

namespace cord::data {
namespace {

using detail::read_all;
using detail::write_all;

const char* const kOnes[] = {"zero",    "one",     "two",       "three",    "four",    "five",    "six",
                             "seven",   "eight",   "nine",      "ten",      "eleven",  "twelve",  "thirteen",
                             "fourteen", "fifteen", "sixteen",  "seventeen", "eighteen", "nineteen"};
const char* const kTens[] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"};
const char* const kLetterNames[] = {"ay", "bee", "see", "dee", "ee", "eff"};

std::string below_thousand(int n) {
  std::string out;
  if (n >= 100) {
    out = std::string(kOnes[n / 100]) + " hundred";
    n %= 100;
    if (n == 0) return out;
    out += " and ";
  }
  if (n < 20) return out + kOnes[n];
  out += kTens[n / 10];
  if (n % 10 != 0) out += std::string(" ") + kOnes[n % 10];
  return out;
}


bool executable(const std::string& path) { return !path.empty() && access(path.c_str(), X_OK) == 0; }

// $CORD_TTS_WORKER, else beside the running program, else where the build put it.
std::string find_worker() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("CORD_TTS_WORKER")) candidates.emplace_back(env);
  std::vector<char> self(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", self.data(), self.size() - 1);
  if (n > 0) {
    const std::string exe(self.data(), static_cast<std::size_t>(n));
    candidates.push_back(exe.substr(0, exe.rfind('/') + 1) + "cord-tts-worker");
  }
#ifdef CORD_TTS_WORKER_PATH
  candidates.emplace_back(CORD_TTS_WORKER_PATH);
#endif
  for (const std::string& c : candidates) {
    if (executable(c)) return c;
  }
  std::string looked;
  for (const std::string& c : candidates) looked += (looked.empty() ? "" : ", ") + c;
  throw Error("cannot find the TTS worker program cord-tts-worker (looked at: " + looked +
              "; set CORD_TTS_WORKER to its path)");
}

}  // namespace

std::string number_in_words(std::int64_t n) {
  CORD_CHECK(n >= 0 && n <= 999999, "number_in_words: " + std::to_string(n) + " outside [0, 999999]");
  if (n < 1000) return below_thousand(static_cast<int>(n));
  std::string out = below_thousand(static_cast<int>(n / 1000)) + " thousand";
  if (n % 1000 != 0) out += (n % 1000 < 100 ? " and " : " ") + below_thousand(static_cast<int>(n % 1000));
  return out;
}

std::string spoken_form(const std::string& text, bool digit_by_digit) {
  std::string out;
  std::size_t i = 0;
  auto append_word = [&out](const std::string& word) {
    if (!out.empty() && out.back() != ' ') out += ' ';
    out += word;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (std::isdigit(static_cast<unsigned char>(c)) != 0) {
      std::size_t end = i;
      while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end])) != 0) ++end;
      const std::string digits = text.substr(i, end - i);
      if (digit_by_digit || digits.size() > 6) {
        for (const char d : digits) append_word(kOnes[d - '0']);
      } else {
        append_word(number_in_words(std::stoll(digits)));
      }
      i = end;
      continue;
    }
    // An option label: a capital A-F alone before ':' (start of text or after a space).
    const bool label_start = (i == 0 || text[i - 1] == ' ');
    if (label_start && c >= 'A' && c <= 'F' && i + 1 < text.size() && text[i + 1] == ':') {
      append_word(std::string("option ") + kLetterNames[c - 'A'] + ",");
      i += 2;
      continue;
    }
    if (c == '+' || c == '-' || c == '=') {
      append_word(c == '+' ? "plus" : c == '-' ? "minus" : "equals");
      ++i;
      continue;
    }
    out += c;
    ++i;
  }
  // Collapse the double spaces the replacements may leave.
  std::string collapsed;
  for (const char c : out) {
    if (c == ' ' && (collapsed.empty() || collapsed.back() == ' ')) continue;
    collapsed += c;
  }
  return collapsed;
}

std::vector<std::string> speaker_names(const CorpusConfig& config) {
  std::vector<std::string> names;
  const std::vector<std::string> variants = split_comma_list(config.variants);
  for (const std::string& base : split_comma_list(config.voices)) {
    for (const std::string& variant : variants) names.push_back(variant == "none" ? base : base + "+" + variant);
  }
  if (names.empty()) throw UsageError("corpus.voices x corpus.variants gives no voice");
  return names;
}

Voice draw_voice(const CorpusConfig& config, std::int64_t index) {
  const std::vector<std::string> names = speaker_names(config);
  Rng rng(derive_seed(static_cast<std::uint64_t>(config.seed), Stream::kVoice, static_cast<std::uint64_t>(index)));
  Voice v;
  v.speaker = static_cast<int>(rng.uniform(0, static_cast<std::int64_t>(names.size()) - 1));
  v.name = names[static_cast<std::size_t>(v.speaker)];
  v.rate = static_cast<int>(rng.uniform(config.rate_min, config.rate_max));
  v.pitch = static_cast<int>(rng.uniform(config.pitch_min, config.pitch_max));
  return v;
}

struct SpeechSynthesizer::Worker {
  pid_t pid = -1;
  int socket = -1;  // our end of a socketpair; the worker's end is its stdin and stdout
  ~Worker() {
    if (socket >= 0) close(socket);  // EOF: the worker exits
    if (pid > 0) {
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
};

SpeechSynthesizer::SpeechSynthesizer() : worker_(std::make_shared<Worker>()) {
  const std::string program = find_worker();
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
    throw Error(std::string("socketpair() for the TTS worker failed: ") + std::strerror(errno));
  }
  worker_->socket = ends[0];
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, ends[1], STDIN_FILENO);  // dup2 clears close-on-exec
  posix_spawn_file_actions_adddup2(&actions, ends[1], STDOUT_FILENO);
  char* argv[] = {const_cast<char*>(program.c_str()), nullptr};
  const int spawned = posix_spawn(&worker_->pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(ends[1]);
  if (spawned != 0) {
    worker_->pid = -1;
    throw Error("cannot start the TTS worker " + program + ": " + std::strerror(spawned));
  }
  std::int32_t rate = 0;
  if (!read_all(worker_->socket, &rate, sizeof rate) || rate <= 0) {
    throw Error("espeak-ng failed to initialise in " + program + " (is espeak-ng-data installed?)");
  }
  sample_rate_ = rate;
}

std::vector<std::int16_t> SpeechSynthesizer::speak(const std::string& text, const Voice& voice,
                                                   unsigned rand_seed) const {
  const std::int32_t rate = voice.rate, pitch = voice.pitch;
  const std::uint32_t seed = rand_seed;
  const auto voice_size = static_cast<std::uint32_t>(voice.name.size());
  const auto text_size = static_cast<std::uint32_t>(text.size());
  const int out = worker_->socket;
  const bool sent = write_all(out, &rate, sizeof rate) && write_all(out, &pitch, sizeof pitch) &&
                    write_all(out, &seed, sizeof seed) && write_all(out, &voice_size, sizeof voice_size) &&
                    write_all(out, voice.name.data(), voice_size) && write_all(out, &text_size, sizeof text_size) &&
                    write_all(out, text.data(), text_size);
  std::int64_t header = -3;
  bool received = sent && read_all(worker_->socket, &header, sizeof header);
  std::vector<std::int16_t> samples;
  if (received && header > 0) {
    samples.resize(static_cast<std::size_t>(header));
    received = read_all(worker_->socket, samples.data(), samples.size() * sizeof(std::int16_t));
  }
  if (header == -1) throw Error("espeak-ng rejected voice '" + voice.name + "' (see corpus.voices / corpus.variants)");
  if (!received || header <= 0) {
    throw Error("espeak-ng failed to speak '" + text.substr(0, 60) + "' with voice " + voice.name +
                (received ? "" : " (the TTS worker stopped)"));
  }
  return samples;
}

}  // namespace cord::data
