// weft/core/checked.hpp - checked size arithmetic and range checks of scalar options.
//
// Sizes computed from user input (rows * cols, rank * (in + out), n^3) go through checked_mul /
// checked_add: a negative operand or a result that does not fit index_t raises ValueError naming
// the caller, instead of signed overflow (undefined behaviour) or a huge allocation.
// positive_in<T>(x) says whether a double option is a finite x > 0 that stays a normal, non-zero
// T, and whose reciprocal is finite in T (a temperature 1e-40 is 0 or denormal in float).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "weft/core/shape.hpp"

WEFT_NAMESPACE_BEGIN

/// a * b for sizes a, b >= 0; ValueError naming `func` when one is negative or a * b overflows.
inline index_t checked_mul(index_t a, index_t b, const char* func) {
  WEFT_CHECK(a >= 0 && b >= 0, value, func, "expected non-negative sizes, got ", a, " and ", b);
  WEFT_CHECK(a == 0 || b <= PTRDIFF_MAX / a, value, func, "expected sizes whose product fits a signed 64-bit index, got ",
             a, " * ", b);
  return a * b;
}

/// a + b for sizes a, b >= 0; ValueError naming `func` when one is negative or a + b overflows.
inline index_t checked_add(index_t a, index_t b, const char* func) {
  WEFT_CHECK(a >= 0 && b >= 0, value, func, "expected non-negative sizes, got ", a, " and ", b);
  WEFT_CHECK(b <= PTRDIFF_MAX - a, value, func, "expected sizes whose sum fits a signed 64-bit index, got ", a, " + ",
             b);
  return a + b;
}

/// Whether x is finite and > 0, stays a normal T > 0, and 1 / x is finite in T.
template <class T>
bool positive_in(double x) {
  if (!(x > 0) || !std::isfinite(x)) return false;
  const T t = T(x), inv = T(1.0 / x);
  return std::isnormal(t) && t > T(0) && std::isfinite(inv);
}

WEFT_NAMESPACE_END
