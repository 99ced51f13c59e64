#include "cord/core/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "cord/core/error.hpp"

namespace cord {

std::string directory_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string temporary_name(const std::string& path, long id) {
  const std::size_t slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return (slash == std::string::npos ? "" : path.substr(0, slash + 1)) + "." + name + ".partial-" + std::to_string(id);
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw Error("cannot open " + path + " to fsync it: " + std::strerror(errno));
  const int status = fsync(fd);
  close(fd);
  if (status != 0) throw Error("fsync of " + path + " failed: " + std::strerror(errno));
}

void make_directories(const std::string& path) {
  if (path.empty()) return;
  std::string prefix;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t slash = path.find('/', start);
    prefix = path.substr(0, slash == std::string::npos ? path.size() : slash);
    start = slash == std::string::npos ? path.size() + 1 : slash + 1;
    if (prefix.empty()) continue;  // leading '/'
    if (mkdir(prefix.c_str(), 0777) != 0 && errno != EEXIST) {
      throw Error("cannot create folder " + prefix + ": " + std::strerror(errno));
    }
  }
  struct stat info {};
  if (stat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) throw Error(path + " exists and is not a folder");
}

bool regular_file_exists(const std::string& path) {
  struct stat info {};
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

std::string read_whole_file(const std::string& path) {
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) throw UsageError("cannot read " + path + ": " + std::strerror(errno));
  if (!S_ISREG(info.st_mode)) throw UsageError("cannot read " + path + ": not a regular file");
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) throw UsageError("cannot read " + path + ": " + std::strerror(errno));
  std::string text;
  char buffer[1 << 16];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, got);
  const bool failed = std::ferror(file) != 0;
  const int saved_errno = errno;
  std::fclose(file);
  if (failed) throw UsageError("cannot read " + path + ": " + std::strerror(saved_errno));
  return text;
}

void commit_rename(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    throw Error("cannot rename " + from + " to " + to + ": " + std::strerror(errno));
  }
  fsync_path(directory_of(to), true);
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string temporary = temporary_name(path, static_cast<long>(getpid()));
  FILE* file = std::fopen(temporary.c_str(), "wb");
  if (file == nullptr) throw Error("cannot create " + temporary + ": " + std::strerror(errno));
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  const bool flushed = std::fflush(file) == 0 && fsync(fileno(file)) == 0;
  const int saved_errno = errno;
  const bool closed = std::fclose(file) == 0;
  if (!written || !flushed || !closed) {
    std::remove(temporary.c_str());
    throw Error("cannot write " + temporary + ": " + std::strerror(saved_errno));
  }
  commit_rename(temporary, path);
}

struct BackgroundWriteback::Worker {
  int fd = -1;
  bool stop = false;
  std::mutex mutex;
  std::condition_variable wake;
  std::thread thread;
};

BackgroundWriteback::BackgroundWriteback(const std::string& path, std::chrono::microseconds interval)
    : worker_(std::make_unique<Worker>()) {
#ifdef __linux__
  Worker& w = *worker_;
  w.fd = open(path.c_str(), O_RDONLY);
  if (w.fd < 0) return;
  w.thread = std::thread([&w, interval] {
    std::unique_lock<std::mutex> lock(w.mutex);
    while (!w.wake.wait_for(lock, interval, [&w] { return w.stop; })) {
      lock.unlock();
      sync_file_range(w.fd, 0, 0, SYNC_FILE_RANGE_WRITE);  // the whole file; may block on a busy queue
      lock.lock();
    }
  });
#else
  (void)path;
  (void)interval;
#endif
}

BackgroundWriteback::~BackgroundWriteback() {
  Worker& w = *worker_;
  {
    const std::lock_guard<std::mutex> lock(w.mutex);
    w.stop = true;
  }
  w.wake.notify_all();
  if (w.thread.joinable()) w.thread.join();
  if (w.fd >= 0) close(w.fd);
}

}  // namespace cord
