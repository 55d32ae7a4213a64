// tests/support/test_util.hpp - small helpers shared by weft's doctest suites: seeded random
// tensors, tensor comparison with a readable message, and an "inputs untouched" snapshot.
//
//   weft::Rng rng(7);
//   auto a = weft::test::randn<double>({3, 4}, rng);
//   WEFT_CHECK_CLOSE(actual, expected, 1e-12);        // |a - e| <= tol * max(1, |e|)
//   weft::test::Snapshot snap({a, b});                 // clones now ...
//   CHECK_THROWS_AS(op(a, b), weft::ShapeError);
//   CHECK(snap.unchanged());                           // ... compares bit for bit later
//   weft::test::ThreadCountGuard guard;                // restores the thread count at scope end
//   auto v = weft::test::uniform_vector<float>(n, -1, 1, rng);  // kernels' raw inputs
//   CHECK(weft::test::same_bits(simd_out, scalar_out));
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "weft/core/parallel.hpp"
#include "weft/core/rng.hpp"
#include "weft/core/tensor.hpp"

namespace weft::test {

/// `name` inside a fresh directory under the system temp dir (one per test program, created on
/// first use and removed when the program exits), for tests that write files.
inline std::string temp_path(const std::string& name) {
  namespace fs = std::filesystem;
  struct Dir {
    fs::path p;
    Dir() {
      p = fs::temp_directory_path() /
          ("weft_test_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
      fs::create_directories(p);
    }
    ~Dir() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  };
  static Dir d;
  return (d.p / name).string();
}

/// Restores the thread count a test changes (weft::set_num_threads) when it goes out of scope.
struct ThreadCountGuard {
  int saved = weft::num_threads();
  ~ThreadCountGuard() { weft::set_num_threads(saved); }
};

/// n draws of U[lo, hi) as a plain vector (the kernels' raw-pointer inputs).
template <class T>
std::vector<T> uniform_vector(index_t n, double lo, double hi, Rng& rng) {
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = T(rng.uniform(lo, hi));
  return v;
}

/// True when a and b hold the same values bit for bit (-0 differs from +0, NaN payloads count).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), sizeof(T) * a.size()) == 0);
}

/// A tensor of shape s filled with N(mean, stddev^2) draws (the real part for complex T).
template <class T>
Tensor<T> randn(const Shape& s, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  Tensor<T> t(s);
  for (auto& x : t) x = T(real_t<T>(rng.normal(mean, stddev)));
  return t;
}

/// A tensor of shape s filled with U[lo, hi) draws (the real part for complex T).
template <class T>
Tensor<T> rand_uniform(const Shape& s, Rng& rng, double lo, double hi) {
  Tensor<T> t(s);
  for (auto& x : t) x = T(real_t<T>(rng.uniform(lo, hi)));
  return t;
}

/// A copy of t where entries with |x| < margin are pushed to +-margin (keeping the sign; 0
/// goes to +margin): inputs for finite differences away from kinks such as relu or abs at 0.
template <class T>
Tensor<T> away_from_zero(const Tensor<T>& t, double margin) {
  Tensor<T> out = t.clone();
  for (auto& x : out)
    if (std::abs(double(x)) < margin) x = T(x < 0 ? -margin : margin);
  return out;
}

/// Outcome of compare(): ok, the largest error and a message naming the worst element.
struct Comparison {
  bool ok = true;
  double max_error = 0;
  std::string message;
};

/// Element-wise |actual - expected| <= tol * max(1, |expected|) (mixed absolute/relative), after
/// checking that the shapes agree. NaN matches NaN only when both are NaN.
template <class T>
Comparison compare(const Tensor<T>& actual, const Tensor<T>& expected, double tol) {
  Comparison c;
  std::ostringstream os;
  if (actual.shape() != expected.shape()) {
    c.ok = false;
    os << "shape " << actual.shape() << " != expected " << expected.shape();
    c.message = os.str();
    return c;
  }
  index_t worst = -1;
  double worst_excess = -1;
  for (index_t i = 0; i < actual.numel(); ++i) {
    const T a = actual.flat(i), e = expected.flat(i);
    const bool both_nan = std::isnan(std::abs(a)) && std::isnan(std::abs(e));
    const double err = both_nan ? 0.0 : double(std::abs(a - e));
    const double bound = tol * std::max(1.0, double(std::abs(e)));
    if (!(err <= bound)) c.ok = false;
    const double excess = std::isnan(err) ? 1e300 : err - bound;
    if (!std::isnan(err)) c.max_error = std::max(c.max_error, err);
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  os << (c.ok ? "close" : "NOT close") << " (tol " << tol << "): max error " << c.max_error;
  if (worst >= 0)
    os << ", worst at flat index " << worst << ": " << actual.flat(worst) << " vs expected "
       << expected.flat(worst);
  os << "; actual " << actual << ", expected " << expected;
  c.message = os.str();
  return c;
}

/// True when both tensors have the same shape and bit-identical elements.
template <class T>
bool identical(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() &&
         (a.numel() == 0 || std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.numel())) == 0);
}

/// Clones tensors now, so a test can check later that a (throwing) call left them untouched.
/// Holds the original handles too: they share storage with what the call saw.
template <class T>
class Snapshot {
 public:
  Snapshot(std::initializer_list<Tensor<T>> ts) {
    for (const auto& t : ts) {
      handles_.push_back(t);
      copies_.push_back(t.clone());
    }
  }
  bool unchanged() const {
    for (std::size_t i = 0; i < handles_.size(); ++i)
      if (!identical(handles_[i], copies_[i])) return false;
    return true;
  }

 private:
  std::vector<Tensor<T>> handles_, copies_;
};

}  // namespace weft::test

/// CHECK that two tensors agree within tol * max(1, |expected|), with a message on failure.
#define WEFT_CHECK_CLOSE(actual, expected, tol)                                 \
  do {                                                                          \
    const auto weft_cmp_ = ::weft::test::compare((actual), (expected), (tol));  \
    CHECK_MESSAGE(weft_cmp_.ok, weft_cmp_.message);                             \
  } while (0)

/// CHECK a weft::GradCheckResult (from grad_check / grad_check_complex_step), with its message.
#define WEFT_CHECK_GRAD(result_expr)                     \
  do {                                                   \
    const auto weft_grad_ = (result_expr);               \
    CHECK_MESSAGE(weft_grad_.ok, weft_grad_.message);    \
    CHECK(weft_grad_.checked > 0);                       \
  } while (0)
