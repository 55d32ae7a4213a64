// weft/core/detail/eigen.hpp - includes <Eigen/Core> for weft.
//
// <immintrin.h> comes first through detail/intrinsics.hpp, which silences GCC 12's false
// "'__Y' is used uninitialized" warnings in its AVX-512 headers (GCC bug 105593).
#pragma once

#include "weft/core/detail/intrinsics.hpp"

#include <Eigen/Core>
