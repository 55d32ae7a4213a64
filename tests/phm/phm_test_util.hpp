// tests/phm/phm_test_util.hpp - helpers of the phm tests: an independent dense reference of the
// Kronecker sum (the spec's index rule written out as loops), random PHM factors, and a
// comparison scaled by the magnitude of the reference.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "support/test_util.hpp"
#include "weft/core/rng.hpp"
#include "weft/core/tensor.hpp"

/// CHECK that `expr` throws `type` whose message starts with "weft::<func>: ".
#define WEFT_PHM_CHECK_FAILS(expr, type, func) \
  CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace weft::phm_test {

/// H[a p + u][c q + v] = sum_i A[i][a][c] B[i][u][v], in double, by the spec's rule (Sec. 2).
template <class T, class U>
Tensor<double> reference_kron_sum(const Tensor<T>& A, const Tensor<U>& B) {
  const index_t n = A.dim(0), p = B.dim(1), q = B.dim(2);
  Tensor<double> H(Shape{n * p, n * q});
  for (index_t i = 0; i < n; ++i)
    for (index_t a = 0; a < n; ++a)
      for (index_t c = 0; c < n; ++c)
        for (index_t u = 0; u < p; ++u)
          for (index_t v = 0; v < q; ++v) H(a * p + u, c * q + v) += double(A(i, a, c)) * double(B(i, u, v));
  return H;
}

/// B[i] = s[i] t[i] in double.
template <class T>
Tensor<double> reference_low_rank(const Tensor<T>& s, const Tensor<T>& t) {
  const index_t n = s.dim(0), p = s.dim(1), r = s.dim(2), q = t.dim(2);
  Tensor<double> B(Shape{n, p, q});
  for (index_t i = 0; i < n; ++i)
    for (index_t u = 0; u < p; ++u)
      for (index_t v = 0; v < q; ++v)
        for (index_t j = 0; j < r; ++j) B(i, u, v) += double(s(i, u, j)) * double(t(i, j, v));
  return B;
}

/// Largest |x| of a tensor (as double).
template <class T>
double max_abs(const Tensor<T>& t) {
  double m = 0;
  for (index_t i = 0; i < t.numel(); ++i) m = std::max(m, double(std::abs(t.flat(i))));
  return m;
}

/// max |actual - expected| <= tol * max(1, max |expected|): the error relative to the scale of
/// the whole reference (entries near zero are not held to a relative bound).
template <class T, class U>
void check_scaled(const Tensor<T>& actual, const Tensor<U>& expected, double tol, const std::string& what) {
  REQUIRE_MESSAGE(actual.shape() == expected.shape(), what, ": shape ", actual.shape(), " vs ", expected.shape());
  double err = 0;
  for (index_t i = 0; i < actual.numel(); ++i)
    err = std::max(err, std::abs(double(actual.flat(i)) - double(expected.flat(i))));
  const double bound = tol * std::max(1.0, max_abs(expected));
  CHECK_MESSAGE(err <= bound, what, ": max error ", err, " > bound ", bound);
}

}  // namespace weft::phm_test
