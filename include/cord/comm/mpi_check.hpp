#pragma once
// CORD_MPI_CHECK(call): MPI calls return codes (MPI_ERRORS_RETURN is set on every
// communicator cord creates); a failure throws CommError with MPI's own error text,
// the call, file:line and rank.
#include <mpi.h>

#include <string>

#include "cord/core/error.hpp"

namespace cord::comm::detail {
std::string mpi_error_text(int code);
}  // namespace cord::comm::detail

#define CORD_MPI_CHECK(call)                                                                  \
  do {                                                                                        \
    const int cord_mpi_status = (call);                                                       \
    if (cord_mpi_status != MPI_SUCCESS) {                                                     \
      ::cord::raise_library_error(::cord::ExitCode::kCommError, "MPI", #call,                 \
                                  ::cord::comm::detail::mpi_error_text(cord_mpi_status),      \
                                  __FILE__, __LINE__);                                        \
    }                                                                                         \
  } while (0)
