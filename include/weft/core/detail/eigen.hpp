// weft/core/detail/eigen.hpp - includes <Eigen/Core> for weft, and keeps Eigen single-threaded.
//
// <immintrin.h> comes first through detail/intrinsics.hpp, which silences GCC 12's false
// "'__Y' is used uninitialized" warnings in its AVX-512 headers (GCC bug 105593).
//
// Eigen's GEMM (behind weft's own products and the matrix products inside its decompositions)
// would otherwise use OpenMP itself, splitting C and choosing its depth blocking by the thread
// count: the bits of every Eigen product would then depend on it. weft threads its own
// products (ops::gemm) with a block layout that depends on the shape alone, so Eigen runs with
// one thread from program start (WEFT_KEEP_EIGEN_THREADS leaves Eigen's setting alone).
#pragma once

#include "weft/config.hpp"
#include "weft/core/detail/intrinsics.hpp"

#include <Eigen/Core>

WEFT_NAMESPACE_BEGIN
namespace detail {
#if WEFT_USE_OPENMP && !defined(WEFT_KEEP_EIGEN_THREADS)
/// Initialised (dynamically, before main) in every program that includes weft.
inline const bool eigen_single_threaded = (Eigen::setNbThreads(1), true);
#endif
}  // namespace detail
WEFT_NAMESPACE_END
