#include "cord/comm/world.hpp"

#include <cstdlib>

#include "cord/comm/mpi_check.hpp"
#include "cord/core/error.hpp"

namespace cord::comm {

namespace detail {
std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}
}  // namespace detail

World::World(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) throw Error("cord::comm::World created twice: MPI is already initialised");
  // MULTIPLE: the hang watchdog's thread (watchdog.hpp) exchanges messages on its own
  // communicator while the working thread may be blocked inside a collective.
  if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level_) != MPI_SUCCESS) {
    throw CommError("MPI_Init_thread failed");
  }
  // Return codes instead of aborting inside MPI, so errors carry cord's context.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  CORD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  CORD_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));

  char name[MPI_MAX_PROCESSOR_NAME];
  int length = 0;
  CORD_MPI_CHECK(MPI_Get_processor_name(name, &length));
  host_.assign(name, static_cast<std::size_t>(length));
  set_process_identity(rank_, host_);

  MPI_Comm node = MPI_COMM_NULL;
  CORD_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  CORD_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
  CORD_MPI_CHECK(MPI_Comm_size(node, &local_size_));
  CORD_MPI_CHECK(MPI_Comm_free(&node));
}

World::~World() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void World::abort(int exit_code) const {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string version(text, static_cast<std::size_t>(length));
  const std::size_t eol = version.find_first_of(",\n");
  return eol == std::string::npos ? version : version.substr(0, eol);
}

}  // namespace cord::comm
