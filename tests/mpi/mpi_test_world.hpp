#pragma once
// GoogleTest under mpiexec: mpi_gtest_main.cpp creates the World, runs every test on
// every rank (tests call collectives, so all ranks run the same tests in the same order),
// prints the full report on rank 0 and only failures, prefixed with the rank, elsewhere.
// The exit code is non-zero when any rank failed.
#include "cord/comm/process_group.hpp"
#include "cord/comm/world.hpp"

namespace cord::testing {
const comm::World& world();
// A group of this rank alone (collective over the world): for tp = 1 / dp = 1 references.
comm::ProcessGroup solo_group();
}  // namespace cord::testing
