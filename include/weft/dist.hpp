// weft/dist.hpp - data-parallel training over MPI (optional; needs <mpi.h> and the CMake target
// weft::dist). Not part of weft/weft.hpp: nothing else in weft includes MPI.
#pragma once

#include "weft/dist/comm.hpp"           // IWYU pragma: export
#include "weft/dist/data_parallel.hpp"  // IWYU pragma: export
#include "weft/dist/reduce.hpp"         // IWYU pragma: export
