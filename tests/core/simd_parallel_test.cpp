// Tests of weft/core/simd/simd.hpp (through the unary kernels of core/ops/elementwise.hpp) and
// weft/core/parallel.hpp: the xsimd path agrees with the scalar reference for every unary op
// descriptor on float and double, full batches and tails; parallel_for tiles its range, keeps
// its grain, and gives the same bits with 1 and N threads.
//
// Tolerances, vector vs scalar path:
// - forward neg, square, relu, abs and sqrt: bit-identical (exact IEEE operations both ways).
// - forward exp, log, tanh, sigmoid: <= 4 ulp (xsimd's and libm's approximations differ).
// - forward gelu: <= 4 ulp, or |error| <= 4 eps |x|: x (1 + tanh(u)) cancels for x << 0, so
//   the few-ulp difference of the two tanh approximations is amplified relative to the result.
// - backward neg, relu, abs: bit-identical (df is 0 or +-1, so gx + gy df is one rounding
//   whether or not the compiler fuses it). The others: |error| <= k eps (|gx| + |gy| M(x, y))
//   with M a bound on the magnitude of the terms of df: the compiler may contract
//   gx + gy * df into an FMA in one path and not the other (GCC's default -ffp-contract=fast),
//   and gelu's df goes through tanh (k = 4; 16 for gelu).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/core_test_helpers.hpp"
#include "support/test_util.hpp"
#include "weft/core/ops/elementwise.hpp"
#include "weft/core/parallel.hpp"
#include "weft/core/rng.hpp"
#include "weft/core/simd/simd.hpp"

namespace weft_unit_core_simd_parallel_test {

using weft::index_t;
namespace ops = weft::ops;

#if WEFT_USE_XSIMD

namespace {

/// Distance in units in the last place between two finite values of the same type.
template <class T>
std::uint64_t ulp_distance(T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  auto key = [](T x) {
    U u;
    std::memcpy(&u, &x, sizeof u);
    const U sign = U(1) << (8 * sizeof(U) - 1);
    return std::uint64_t((u & sign) ? U(~u) : U(u | sign));  // monotone in x; -0 and +0 adjacent
  };
  const std::uint64_t ka = key(a), kb = key(b);
  return ka > kb ? ka - kb : kb - ka;
}

template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

/// Per-op test settings: input range, forward tolerance, backward magnitude bound M(x, y).
template <class Op>
struct op_case;
template <>
struct op_case<ops::neg_op> {
  static constexpr double lo = -10, hi = 10;
  static constexpr bool exact_fwd = true, exact_bwd = true;
  static double mag(double, double) { return 1; }
};
template <>
struct op_case<ops::square_op> {
  static constexpr double lo = -10, hi = 10;
  static constexpr bool exact_fwd = true, exact_bwd = false;
  static double mag(double x, double) { return 2 * std::abs(x); }
};
template <>
struct op_case<ops::exp_op> {
  static constexpr double lo = -20, hi = 20;
  static constexpr bool exact_fwd = false, exact_bwd = false;
  static double mag(double, double y) { return std::abs(y); }
};
template <>
struct op_case<ops::log_op> {
  static constexpr double lo = 1e-3, hi = 100;
  static constexpr bool exact_fwd = false, exact_bwd = false;
  static double mag(double x, double) { return 1 / std::abs(x); }
};
template <>
struct op_case<ops::sqrt_op> {
  static constexpr double lo = 0, hi = 100;
  static constexpr bool exact_fwd = true, exact_bwd = false;
  static double mag(double, double y) { return 0.5 / std::abs(y); }
};
template <>
struct op_case<ops::tanh_op> {
  static constexpr double lo = -10, hi = 10;
  static constexpr bool exact_fwd = false, exact_bwd = false;
  static double mag(double, double y) { return 1 + y * y; }
};
template <>
struct op_case<ops::sigmoid_op> {
  static constexpr double lo = -20, hi = 20;
  static constexpr bool exact_fwd = false, exact_bwd = false;
  static double mag(double, double y) { return std::abs(y) * (1 + std::abs(y)); }
};
template <>
struct op_case<ops::relu_op> {
  static constexpr double lo = -10, hi = 10;
  static constexpr bool exact_fwd = true, exact_bwd = true;
  static double mag(double, double) { return 1; }
};
template <>
struct op_case<ops::gelu_op> {
  static constexpr double lo = -8, hi = 8;
  static constexpr bool exact_fwd = false, exact_bwd = false;
  static double mag(double x, double) {
    const double c = ops::gelu_op::c, k = ops::gelu_op::k;
    const double t = std::tanh(c * (x + k * x * x * x));
    return 0.5 * (1 + std::abs(t)) + 0.5 * std::abs(x) * (1 + t * t) * c * (1 + 3 * k * x * x);
  }
};
template <>
struct op_case<ops::abs_op> {
  static constexpr double lo = -10, hi = 10;
  static constexpr bool exact_fwd = true, exact_bwd = true;
  static double mag(double, double) { return 1; }
};

/// Inputs in [lo, hi) with some exact zeros (and -0) where the range allows.
template <class T>
std::vector<T> make_inputs(index_t n, double lo, double hi, weft::Rng& rng) {
  std::vector<T> x(std::size_t(n) + 1);  // +1 so a shifted (unaligned) start has n elements
  for (auto& v : x) v = T(rng.uniform(lo, hi));
  for (std::size_t i = 5; i < x.size() && lo <= 0; i += 7) x[i] = (i % 2) ? T(0) : T(-0.0);
  return x;
}

constexpr int kSentinels = 20;  // elements past the end that a kernel must not touch

template <class Op, class T>
void check_forward(index_t n, index_t shift, weft::Rng& rng) {
  using C = op_case<Op>;
  const std::vector<T> in = make_inputs<T>(n, C::lo, C::hi, rng);
  const T sentinel = T(-12345.5);
  std::vector<T> vs(std::size_t(n + kSentinels), sentinel), sc(std::size_t(n + kSentinels), sentinel);
  const T* x = in.data() + shift;
  ops::unary_forward_simd<Op>(x, vs.data(), n);
  ops::unary_forward_scalar<Op>(x, sc.data(), n);
  const double eps = std::numeric_limits<T>::epsilon();
  std::uint64_t worst_ulps = 0;
  index_t bad = -1;
  for (index_t i = 0; i < n; ++i) {
    const T a = vs[std::size_t(i)], b = sc[std::size_t(i)];
    bool ok;
    if (C::exact_fwd) {
      ok = same_bits(a, b);  // including the sign of zero (neg flips the sign bit)
    } else {
      const std::uint64_t u = ulp_distance(a, b);
      worst_ulps = std::max(worst_ulps, u);
      ok = u <= 4;
      if (std::is_same_v<Op, ops::gelu_op>) ok = ok || std::abs(double(a) - double(b)) <= 4 * eps * std::abs(double(x[i]));
    }
    if (!ok && bad < 0) bad = i;
  }
  CAPTURE(n);
  CAPTURE(shift);
  CAPTURE(worst_ulps);
  if (bad >= 0) {
    const std::string where = std::string(Op::name) + ": x = " + std::to_string(double(x[bad])) + ", simd " +
                              std::to_string(double(vs[std::size_t(bad)])) + ", scalar " +
                              std::to_string(double(sc[std::size_t(bad)]));
    FAIL_CHECK(where);
  }
  bool untouched = true;
  for (index_t i = n; i < n + kSentinels; ++i) untouched = untouched && same_bits(vs[std::size_t(i)], sentinel);
  CHECK_MESSAGE(untouched, Op::name, ": unary_forward_simd wrote past element ", n);
}

template <class Op, class T>
void check_backward(index_t n, index_t shift, weft::Rng& rng) {
  using C = op_case<Op>;
  const std::vector<T> in = make_inputs<T>(n, C::lo, C::hi, rng);
  const T* x = in.data() + shift;
  std::vector<T> y(std::size_t(n) + 1), gy(std::size_t(n) + 1);
  ops::unary_forward_scalar<Op>(x, y.data(), n);
  for (auto& g : gy) g = T(rng.uniform(-2, 2));
  const T sentinel = T(777.25);
  std::vector<T> gx0(std::size_t(n + kSentinels), sentinel);
  for (index_t i = 0; i < n; ++i) gx0[std::size_t(i)] = T(rng.uniform(-1, 1));
  std::vector<T> gvs = gx0, gsc = gx0;
  ops::unary_backward_simd<Op>(x, y.data(), gy.data(), gvs.data(), n);
  ops::unary_backward_scalar<Op>(x, y.data(), gy.data(), gsc.data(), n);
  const double eps = std::numeric_limits<T>::epsilon();
  const double k = std::is_same_v<Op, ops::gelu_op> ? 16 : 4;
  index_t bad = -1;
  for (index_t i = 0; i < n; ++i) {
    const std::size_t s = std::size_t(i);
    const T a = gvs[s], b = gsc[s];
    bool ok;
    if (C::exact_bwd || same_bits(a, b)) {  // same_bits also covers equal infinities
      ok = same_bits(a, b);
    } else {
      const double scale = std::abs(double(gx0[s])) + std::abs(double(gy[s])) * C::mag(double(x[i]), double(y[s]));
      ok = std::abs(double(a) - double(b)) <= k * eps * scale;
    }
    if (!ok && bad < 0) bad = i;
  }
  CAPTURE(n);
  CAPTURE(shift);
  if (bad >= 0) {
    const std::string where = std::string(Op::name) + " backward: x = " + std::to_string(double(x[bad])) +
                              ", simd " + std::to_string(double(gvs[std::size_t(bad)])) + ", scalar " +
                              std::to_string(double(gsc[std::size_t(bad)]));
    FAIL_CHECK(where);
  }
  bool untouched = true;
  for (index_t i = n; i < n + kSentinels; ++i) untouched = untouched && same_bits(gvs[std::size_t(i)], sentinel);
  CHECK_MESSAGE(untouched, Op::name, ": unary_backward_simd wrote past element ", n);
}

template <class Op, class T>
void check_op() {
  weft::Rng rng(std::hash<std::string>{}(Op::name) ^ sizeof(T));
  for (index_t n = 0; n <= 67; ++n)
    for (index_t shift : {0, 1}) {
      check_forward<Op, T>(n, shift, rng);
      check_backward<Op, T>(n, shift, rng);
    }
  check_forward<Op, T>(10007, 0, rng);
  check_forward<Op, T>(10007, 1, rng);
  check_backward<Op, T>(10007, 0, rng);
  check_backward<Op, T>(10007, 1, rng);
  // the dispatching driver takes the vector path exactly when simd::active (not with
  // WEFT_DONT_VECTORIZE)
  std::vector<T> in = make_inputs<T>(10007, op_case<Op>::lo, op_case<Op>::hi, rng);
  std::vector<T> a(in.size()), b(in.size());
  ops::unary_forward<Op>(in.data(), a.data(), index_t(in.size()));
  if constexpr (weft::simd::active<T>) ops::unary_forward_simd<Op>(in.data(), b.data(), index_t(in.size()));
  else ops::unary_forward_scalar<Op>(in.data(), b.data(), index_t(in.size()));
  CHECK(std::memcmp(a.data(), b.data(), sizeof(T) * a.size()) == 0);
}

}  // namespace

TEST_CASE("core/simd: float and double take the vector path, complex the scalar one") {
  CHECK(weft::simd::available<float>);
  CHECK(weft::simd::available<double>);
  CHECK_FALSE(weft::simd::available<std::complex<float>>);
  CHECK_FALSE(weft::simd::available<std::complex<double>>);
  CHECK(weft::simd::active<float> == bool(WEFT_VECTORIZE));
  CHECK(weft::simd::width<float> >= 1);
  CHECK(weft::simd::width<float> == 2 * weft::simd::width<double>);
  CHECK(std::string(weft::simd::arch_name()).size() > 0);
  MESSAGE("xsimd arch: ", weft::simd::arch_name(), ", float width ", weft::simd::width<float>);
}

TEST_CASE_TEMPLATE("core/simd: unary kernels, vector path vs scalar path (float)", Op, ops::neg_op,
                   ops::square_op, ops::exp_op, ops::log_op, ops::sqrt_op, ops::tanh_op, ops::sigmoid_op,
                   ops::relu_op, ops::gelu_op, ops::abs_op) {
  check_op<Op, float>();
}

TEST_CASE_TEMPLATE("core/simd: unary kernels, vector path vs scalar path (double)", Op, ops::neg_op,
                   ops::square_op, ops::exp_op, ops::log_op, ops::sqrt_op, ops::tanh_op, ops::sigmoid_op,
                   ops::relu_op, ops::gelu_op, ops::abs_op) {
  check_op<Op, double>();
}

TEST_CASE("core/simd: map drivers run the vector body on full batches and the scalar one on the tail") {
  constexpr index_t W = weft::simd::width<float>;
  for (index_t n = 0; n <= 3 * W + 1; ++n) {
    std::vector<float> a(std::size_t(n), 1.0f), b(std::size_t(n), 2.0f), c(std::size_t(n), 3.0f);
    std::vector<float> o1(a.size()), o2(a.size()), o3(a.size());
    using B = weft::simd::batch<float>;
    // the two bodies give different answers, so the output shows which one ran where
    weft::simd::map(a.data(), o1.data(), n, [](B x) { return x + B(10.0f); }, [](float x) { return x - 10.0f; });
    weft::simd::map2(a.data(), b.data(), o2.data(), n, [](B x, B y) { return x + y; },
                     [](float x, float y) { return -(x + y); });
    weft::simd::map3(a.data(), b.data(), c.data(), o3.data(), n, [](B x, B y, B z) { return x + y + z; },
                     [](float x, float y, float z) { return -(x + y + z); });
    const index_t full = n / W * W;
    for (index_t i = 0; i < n; ++i) {
      const bool vec = i < full;
      CHECK(o1[std::size_t(i)] == (vec ? 11.0f : -9.0f));
      CHECK(o2[std::size_t(i)] == (vec ? 3.0f : -3.0f));
      CHECK(o3[std::size_t(i)] == (vec ? 6.0f : -6.0f));
    }
  }
}

#endif  // WEFT_USE_XSIMD

TEST_CASE("core/simd: complex tensors take the scalar body") {
  std::vector<std::complex<double>> x = {{0.5, 1.0}, {-1.0, 0.25}, {2.0, -3.0}};
  std::vector<std::complex<double>> y(3), r(3);
  ops::unary_forward<ops::exp_op>(x.data(), y.data(), 3);
  ops::unary_forward_scalar<ops::exp_op>(x.data(), r.data(), 3);
  CHECK(y == r);
  CHECK(y[0] == std::exp(x[0]));
  ops::unary_forward<ops::relu_op>(x.data(), y.data(), 3);
  CHECK(y[1] == std::complex<double>(0, 0));
  CHECK(y[2] == x[2]);
}

// ---------------------------------------------------------------------------------------------
// parallel_for

namespace {

using weft::test::ThreadCountGuard;

struct Chunks {
  std::mutex m;
  std::vector<std::pair<index_t, index_t>> v;
  void add(index_t lo, index_t hi) {
    std::lock_guard<std::mutex> lock(m);
    v.emplace_back(lo, hi);
  }
  /// True when the chunks are non-empty, disjoint and tile [b, e) exactly.
  bool tile(index_t b, index_t e) {
    std::sort(v.begin(), v.end());
    index_t at = b;
    for (auto& c : v) {
      if (c.first != at || c.second <= c.first) return false;
      at = c.second;
    }
    return at == e;
  }
};

}  // namespace

TEST_CASE("core/parallel: chunks tile the range exactly once and respect the grain") {
  ThreadCountGuard guard;
  struct Case {
    index_t begin, end, grain;
  };
  const Case cases[] = {{0, 100000, 1000}, {5, 100005, 1}, {-50, 50, 10}, {0, 10, 3}, {0, 10, 4},
                        {0, 1, 1},         {0, 7, 1},      {3, 4, 100},   {0, 65537, 32768}, {0, 99, 33},
                        {7, 1007, 100}};
  for (int threads : {1, 2, 3, 4, 7}) {
    weft::set_num_threads(threads);
    for (const Case& c : cases) {
      CAPTURE(threads);
      CAPTURE(c.begin);
      CAPTURE(c.end);
      CAPTURE(c.grain);
      Chunks chunks;
      std::vector<std::atomic<int>> hits(std::size_t(c.end - c.begin));
      for (auto& h : hits) h = 0;
      weft::parallel_for(c.begin, c.end, c.grain, [&](index_t lo, index_t hi) {
        chunks.add(lo, hi);
        for (index_t i = lo; i < hi; ++i) ++hits[std::size_t(i - c.begin)];
      });
      CHECK(chunks.tile(c.begin, c.end));
      bool once = true;
      for (auto& h : hits) once = once && h == 1;
      CHECK(once);
      const index_t n = c.end - c.begin;
      for (auto& ch : chunks.v) CHECK(ch.second - ch.first >= std::min(c.grain, n));
#if WEFT_USE_OPENMP
      // grains >= 64 are rounded up to a multiple of 64, and chunks start 64-aligned
      const index_t grain = c.grain >= 64 ? (c.grain + 63) / 64 * 64 : c.grain;
      const index_t expected = std::max<index_t>(1, std::min<index_t>(threads, n / grain));
      CHECK(index_t(chunks.v.size()) == expected);
      if (c.grain >= 64)
        for (auto& ch : chunks.v) CHECK((ch.first - c.begin) % 64 == 0);
#else
      CHECK(chunks.v.size() == 1);
#endif
    }
  }
}

TEST_CASE("core/parallel: empty ranges never call the body; small ones run inline") {
  ThreadCountGuard guard;
  weft::set_num_threads(2);
  int calls = 0;
  weft::parallel_for(0, 0, 1, [&](index_t, index_t) { ++calls; });
  weft::parallel_for(10, 10, [&](index_t, index_t) { ++calls; });
  weft::parallel_for(10, 3, 1, [&](index_t, index_t) { ++calls; });
  CHECK(calls == 0);
  // below twice the grain: one call covering everything, on the calling thread
  std::vector<std::pair<index_t, index_t>> seen;
  weft::parallel_for(0, 1000, [&](index_t lo, index_t hi) { seen.emplace_back(lo, hi); });
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == std::make_pair(index_t(0), index_t(1000)));
  // a grain of 0 or less counts as 1
  Chunks chunks;
  weft::parallel_for(0, 4, 0, [&](index_t lo, index_t hi) { chunks.add(lo, hi); });
  CHECK(chunks.tile(0, 4));
}

#if WEFT_USE_OPENMP
TEST_CASE("core/parallel: uses several threads, and none inside a parallel region") {
  ThreadCountGuard guard;
  weft::set_num_threads(2);
  CHECK(weft::num_threads() == 2);
  std::mutex m;
  std::vector<int> ids;
  weft::parallel_for(0, 100000, 1000, [&](index_t, index_t) {
    std::lock_guard<std::mutex> lock(m);
    ids.push_back(omp_get_thread_num());
  });
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<int>{0, 1});

  std::atomic<int> calls{0};
#pragma omp parallel num_threads(2)
  {
    weft::parallel_for(0, 100000, 1000, [&](index_t lo, index_t hi) {
      if (lo == 0 && hi == 100000) ++calls;
    });
  }
  CHECK(calls == 2);  // one whole-range call per outer thread
}
#endif

namespace {
template <class Op, class T>
std::vector<T> run_forward(const std::vector<T>& x) {
  std::vector<T> y(x.size());
  ops::unary_forward<Op>(x.data(), y.data(), index_t(x.size()));
  return y;
}
template <class Op, class T>
std::vector<T> run_backward(const std::vector<T>& x, const std::vector<T>& y, const std::vector<T>& gy) {
  std::vector<T> gx(x.size(), T(0.5));
  ops::unary_backward<Op>(x.data(), y.data(), gy.data(), gx.data(), index_t(x.size()));
  return gx;
}
template <class Op, class T>
void check_thread_invariance() {
  ThreadCountGuard guard;
  weft::Rng rng(31);
  // odd length: the single-thread run has a tail at the very end, the chunked runs must not
  // put a scalar tail in the middle of the range
  const index_t n = 4 * WEFT_PARALLEL_GRAIN + 13;
  std::vector<T> x(static_cast<std::size_t>(n)), gy(static_cast<std::size_t>(n));
  for (auto& v : x) v = T(rng.uniform(-4, 4));
  for (auto& v : gy) v = T(rng.uniform(-1, 1));
  weft::set_num_threads(1);
  const std::vector<T> y1 = run_forward<Op>(x), g1 = run_backward<Op>(x, y1, gy);
  for (int threads : {2, 3, 4}) {
    CAPTURE(threads);
    weft::set_num_threads(threads);
    const std::vector<T> yn = run_forward<Op>(x), gn = run_backward<Op>(x, y1, gy);
    CHECK(std::memcmp(y1.data(), yn.data(), sizeof(T) * y1.size()) == 0);
    CHECK(std::memcmp(g1.data(), gn.data(), sizeof(T) * g1.size()) == 0);
  }
}
}  // namespace

TEST_CASE_TEMPLATE("core/parallel: unary kernels give the same bits with 1 and N threads", Op, ops::tanh_op,
                   ops::gelu_op, ops::exp_op, ops::sigmoid_op) {
  check_thread_invariance<Op, float>();
  check_thread_invariance<Op, double>();
}

TEST_CASE("core/parallel: set_num_threads checks its argument") {
  ThreadCountGuard guard;
  CHECK(weft::num_threads() >= 1);
  WEFT_CHECK_FAILS(weft::set_num_threads(0), weft::ValueError, "set_num_threads");
  WEFT_CHECK_FAILS(weft::set_num_threads(-2), weft::ValueError, "set_num_threads");
  weft::set_num_threads(3);
#if WEFT_USE_OPENMP
  CHECK(weft::num_threads() == 3);
#else
  CHECK(weft::num_threads() == 1);
#endif
}

}  // namespace weft_unit_core_simd_parallel_test
