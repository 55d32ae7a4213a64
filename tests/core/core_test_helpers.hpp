// tests/core/core_test_helpers.hpp - helpers for the tensor-core and tape tests: typed test
// values (real or complex), index-based reference loops, and a check that an error has the
// right type and names the function.
#pragma once

#include <doctest/doctest.h>

#include <complex>
#include <cstdint>
#include <string>

#include "weft/core/tensor.hpp"

/// CHECK that `expr` throws `type` (a weft::Error subclass) whose message starts with
/// "weft::<func>: ".
#define WEFT_CHECK_FAILS(expr, type, func) \
  CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace weft::core_test {

/// T from a real and an imaginary part (the imaginary part is dropped for real T).
template <class T>
T make(double re, double im = 0.0) {
  if constexpr (is_complex_v<T>) return T(real_t<T>(re), real_t<T>(im));
  else return T(re);
}

/// Distinct, exactly representable values: element i is (i + 1) or (i + 1) - (i + 0.5) i.
template <class T>
Tensor<T> iota(const Shape& s) {
  Tensor<T> t(s);
  for (index_t i = 0; i < t.numel(); ++i) t.flat(i) = make<T>(double(i + 1), -(double(i) + 0.5));
  return t;
}

/// Extents of s padded with 1 to rank 4 (trailing).
inline void padded_dims(const Shape& s, index_t d[4]) {
  for (int k = 0; k < 4; ++k) d[k] = k < s.rank() ? s[k] : 1;
}

/// Row-major offset of the padded index i[4] in a tensor of shape s.
inline index_t offset_of(const Shape& s, const index_t i[4]) {
  index_t d[4];
  padded_dims(s, d);
  return ((i[0] * d[1] + i[1]) * d[2] + i[2]) * d[3] + i[3];
}

/// Calls f(i) for every padded index i[4] of shape s in row-major order.
template <class F>
void for_each_index(const Shape& s, F&& f) {
  index_t d[4];
  padded_dims(s, d);
  index_t i[4];
  for (i[0] = 0; i[0] < d[0]; ++i[0])
    for (i[1] = 0; i[1] < d[1]; ++i[1])
      for (i[2] = 0; i[2] < d[2]; ++i[2])
        for (i[3] = 0; i[3] < d[3]; ++i[3]) f(static_cast<const index_t*>(i));
}

inline bool aligned_to(const void* p, std::uintptr_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

}  // namespace weft::core_test
