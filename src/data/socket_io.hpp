#pragma once
// Whole-buffer reads and writes on a socket, for the cord <-> cord-tts-worker protocol
// (speech.cpp and tts_worker.cpp; both ends are a socketpair). Retries on EINTR and
// partial transfers; false when the peer is gone. send() with MSG_NOSIGNAL so that a
// dead peer makes the write fail instead of killing the process with SIGPIPE.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace cord::data::detail {

inline bool write_all(int fd, const void* data, std::size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = send(fd, p, bytes, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<std::size_t>(n);
  }
  return true;
}

inline bool read_all(int fd, void* data, std::size_t bytes) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = read(fd, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace cord::data::detail
