#pragma once
// Small POSIX file helpers for writing outputs durably (write a temporary file, fsync,
// rename, fsync the folder) and for run directories. POSIX calls on purpose: libtorch
// exports its own std::filesystem symbols, which have crashed here.
#include <chrono>
#include <memory>
#include <string>

namespace cord {

// The folder part of `path` ("." when it has none).
std::string directory_of(const std::string& path);

// ".NAME.partial-ID" beside `path`: where a file is written before it is renamed into place.
std::string temporary_name(const std::string& path, long id);

// Flushes `path` (a file, or a folder's entries) to disk; throws Error naming it.
void fsync_path(const std::string& path, bool directory);

// Creates `path` and its missing parents (mkdir -p); throws Error naming the folder
// that could not be created.
void make_directories(const std::string& path);

// Writes `text` to `path` atomically: temporary file, fsync, rename, fsync of the folder.
void write_file_atomically(const std::string& path, const std::string& text);

// Whether `path` names an existing regular file (not a folder).
bool regular_file_exists(const std::string& path);

// The whole of file `path` (bytes as they are); throws UsageError naming it, and why, when
// it is missing, a folder or unreadable: the files cord reads this way come from users.
std::string read_whole_file(const std::string& path);

// Renames `from` to `to` and fsyncs the folder of `to`; throws Error naming both.
void commit_rename(const std::string& from, const std::string& to);

// While alive, a helper thread asks the kernel every `interval` to start writing the dirty
// pages of `path` to disk (Linux sync_file_range, SYNC_FILE_RANGE_WRITE; it does not wait
// for them). A writer producing a large file then overlaps its page-cache writes with the
// disk's work, and the fsync that commits the file waits only for the tail. Durability
// still comes from that fsync; this only moves work earlier. A file that cannot be opened,
// or a system without sync_file_range, makes it a no-op. Not copyable or movable.
class BackgroundWriteback {
 public:
  explicit BackgroundWriteback(const std::string& path,
                               std::chrono::microseconds interval = std::chrono::milliseconds(1));
  ~BackgroundWriteback();  // stops and joins the thread
  BackgroundWriteback(const BackgroundWriteback&) = delete;
  BackgroundWriteback& operator=(const BackgroundWriteback&) = delete;

 private:
  struct Worker;  // the thread and its stop signal (files.cpp)
  std::unique_ptr<Worker> worker_;
};

}  // namespace cord
