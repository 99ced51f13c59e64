#pragma once
// Small POSIX file helpers for writing outputs durably (write a temporary file, fsync,
// rename, fsync the folder) and for run directories. POSIX calls on purpose: libtorch
// exports its own std::filesystem symbols, which have crashed here.
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

// Renames `from` to `to` and fsyncs the folder of `to`; throws Error naming both.
void commit_rename(const std::string& from, const std::string& to);

}  // namespace cord
