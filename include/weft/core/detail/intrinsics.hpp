// weft/core/detail/intrinsics.hpp - includes <immintrin.h> under a diagnostic guard.
//
// GCC 12 reports false "'__Y' is used uninitialized" warnings inside its own AVX-512 intrinsic
// headers when AVX-512 kernels (Eigen's or xsimd's) are inlined (GCC bug 105593, fixed in
// GCC 13). The warnings are located in <immintrin.h>'s sub-headers, so including that header
// once under a diagnostic pragma silences exactly them, for weft's users as well as its tests.
// Every weft header that can be the first to pull in the intrinsics (detail/eigen.hpp,
// simd/simd.hpp) includes this file first.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13 && defined(__AVX512F__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
