// cord-tts-worker: the espeak-ng process behind data::SpeechSynthesizer.
//
// Why a separate small program: espeak-ng keeps hidden state across utterances and draws
// from libc rand() (speech.hpp), so every utterance must start from the same engine state.
// We get that by initialising the engine once here and speaking each utterance in a
// fork()ed child. Forking this small process costs ~1 ms; forking a cord rank (libtorch,
// MPI) cost ~12 ms per utterance, more than the synthesis itself.
//
// Protocol on stdin/stdout, both one end of a socketpair (native byte order: parent and
// worker are one machine):
//   at start    worker -> int32 sample rate (<= 0: espeak-ng failed to initialise)
//   request     int32 rate, int32 pitch, uint32 rand_seed, uint32 n, n bytes voice name,
//               uint32 m, m bytes UTF-8 text
//   reply       int64 count (-1 voice rejected, -2 synthesis failed), count int16 samples
// The worker exits when stdin closes.
#include <espeak-ng/speak_lib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "socket_io.hpp"

namespace {

using cord::data::detail::read_all;
using cord::data::detail::write_all;


bool read_string(int fd, std::string& out) {
  std::uint32_t size = 0;
  if (!read_all(fd, &size, sizeof size) || size > (1u << 20)) return false;
  out.resize(size);
  return size == 0 || read_all(fd, out.data(), size);
}

std::vector<std::int16_t> g_samples;  // the child's utterance

int collect_samples(short* wav, int count, espeak_EVENT* /*events*/) {
  if (wav != nullptr && count > 0) g_samples.insert(g_samples.end(), wav, wav + count);
  return 0;
}

// In the forked child: speak from the pristine state, reply, exit.
[[noreturn]] void speak_and_exit(const std::string& voice, int rate, int pitch, unsigned seed, const std::string& text) {
  std::srand(seed);
  std::int64_t header = 0;
  if (espeak_SetVoiceByName(voice.c_str()) != EE_OK) {
    header = -1;
  } else {
    espeak_SetParameter(espeakRATE, rate, 0);
    espeak_SetParameter(espeakPITCH, pitch, 0);
    const espeak_ERROR status =
        espeak_Synth(text.c_str(), text.size() + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, nullptr, nullptr);
    header = status == EE_OK && espeak_Synchronize() == EE_OK ? static_cast<std::int64_t>(g_samples.size()) : -2;
  }
  bool ok = write_all(STDOUT_FILENO, &header, sizeof header);
  if (ok && header > 0) ok = write_all(STDOUT_FILENO, g_samples.data(), g_samples.size() * sizeof(std::int16_t));
  _exit(ok ? 0 : 1);
}

}  // namespace

int main() {
  // espeakINITIALIZE_DONT_EXIT: report missing data instead of exiting.
  const std::int32_t rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, nullptr, espeakINITIALIZE_DONT_EXIT);
  if (rate > 0) {
    espeak_SetSynthCallback(&collect_samples);
    // Load the English dictionary once (selecting a voice speaks nothing, so every child
    // still starts from one fixed state); otherwise every child reloads it (~4 ms).
    espeak_SetVoiceByName("en");
  }
  if (!write_all(STDOUT_FILENO, &rate, sizeof rate) || rate <= 0) return 1;
  for (;;) {
    std::int32_t speech_rate = 0, pitch = 0;
    std::uint32_t seed = 0;
    std::string voice, text;
    if (!read_all(STDIN_FILENO, &speech_rate, sizeof speech_rate)) return 0;  // the parent is done
    if (!read_all(STDIN_FILENO, &pitch, sizeof pitch) || !read_all(STDIN_FILENO, &seed, sizeof seed) ||
        !read_string(STDIN_FILENO, voice) || !read_string(STDIN_FILENO, text)) {
      return 1;
    }
    const pid_t child = fork();
    if (child < 0) {
      const std::int64_t failed = -2;
      if (!write_all(STDOUT_FILENO, &failed, sizeof failed)) return 1;
      continue;
    }
    if (child == 0) speak_and_exit(voice, speech_rate, pitch, seed, text);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;  // the reply is incomplete: stop
  }
}
