// weft/core/rng.hpp - a seeded, portable random number generator and tensor initialisers.
//
// Rng is xoshiro256** (Blackman & Vigna) seeded through splitmix64. Every draw is computed by
// weft itself (no std::*_distribution, whose output differs between standard libraries), so a
// seed gives the same numbers on every platform and compiler. Rng::stream(k) derives
// independent generators, e.g. one per replication, so results do not depend on how work is
// spread over threads.
//
// Initialisers follow PyTorch's conventions for a weight of shape (fan_out, fan_in, ...):
// fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  void reseed(std::uint64_t seed) {
    seed_ = seed;
    std::uint64_t x = seed;
    for (auto& w : s_) w = splitmix64(x);
    has_spare_ = false;
  }
  std::uint64_t seed() const noexcept { return seed_; }

  /// An independent generator for stream k, derived from this generator's seed only (not its
  /// state): stream(k) is the same whatever has been drawn from *this.
  Rng stream(std::uint64_t k) const {
    std::uint64_t x = seed_ ^ (0x9E3779B97F4A7C15ULL * (k + 1));
    return Rng(splitmix64(x) ^ k);
  }

  /// Next 64 random bits.
  std::uint64_t next_u64() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  /// Uniform double in [0, 1) with 53 random bits.
  double uniform() noexcept { return double(next_u64() >> 11) * 0x1.0p-53; }
  /// Uniform double in [a, b).
  double uniform(double a, double b) noexcept { return a + (b - a) * uniform(); }
  /// Uniform integer in [0, n) without modulo bias (n > 0).
  std::uint64_t below(std::uint64_t n) {
    WEFT_CHECK(n > 0, value, "Rng::below", "expected n > 0, got 0");
    std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n);
    std::uint64_t x;
    do x = next_u64(); while (x >= limit);
    return x % n;
  }
  /// Standard normal draw (Marsaglia polar method, spare value cached).
  double normal() noexcept {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u, v, s;
    do {
      u = 2.0 * uniform() - 1.0;
      v = 2.0 * uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = std::sqrt(-2.0 * std::log(s) / s);
    spare_ = v * f;
    has_spare_ = true;
    return u * f;
  }
  double normal(double mean, double stddev) noexcept { return mean + stddev * normal(); }

  /// Fisher-Yates shuffle of [first, last).
  template <class It>
  void shuffle(It first, It last) {
    auto n = last - first;
    for (decltype(n) i = n - 1; i > 0; --i) std::swap(first[i], first[decltype(n)(below(std::uint64_t(i) + 1))]);
  }
  /// A random permutation of 0..n-1.
  std::vector<index_t> permutation(index_t n) {
    std::vector<index_t> p(std::size_t(n > 0 ? n : 0));
    for (index_t i = 0; i < n; ++i) p[std::size_t(i)] = i;
    shuffle(p.begin(), p.end());
    return p;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::uint64_t s_[4]{};
  std::uint64_t seed_ = 0;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

namespace init {

namespace detail {
template <class T>
void check_real_defined(const Tensor<T>& t, const char* func) {
  static_assert(!is_complex_v<T>, "weft::init fills real tensors; fill real and imaginary parts separately");
  WEFT_CHECK(t.defined(), shape, func, "expected a defined tensor, got an undefined one");
}
}  // namespace detail

/// Fills t with draws from U[a, b).
template <class T>
void uniform(Tensor<T>& t, double a, double b, Rng& rng) {
  detail::check_real_defined(t, "init::uniform");
  WEFT_CHECK(a <= b && std::isfinite(a) && std::isfinite(b), value, "init::uniform",
             "expected finite a <= b, got a = ", a, ", b = ", b);
  for (auto& x : t) x = T(rng.uniform(a, b));
}
/// Fills t with draws from N(mean, stddev^2).
template <class T>
void normal(Tensor<T>& t, double mean, double stddev, Rng& rng) {
  detail::check_real_defined(t, "init::normal");
  WEFT_CHECK(stddev >= 0 && std::isfinite(stddev) && std::isfinite(mean), value, "init::normal",
             "expected finite mean and stddev >= 0, got mean = ", mean, ", stddev = ", stddev);
  for (auto& x : t) x = T(rng.normal(mean, stddev));
}

/// fan_in and fan_out of a weight with PyTorch's convention (shape (out, in, receptive...)).
struct Fans {
  double fan_in, fan_out;
};
template <class T>
Fans fans(const Tensor<T>& t) {
  WEFT_CHECK(t.rank() >= 2, shape, "init::fans",
             "expected a weight of rank >= 2 (out, in, ...), got shape ", t.shape());
  double receptive = 1;
  for (int k = 2; k < t.rank(); ++k) receptive *= double(t.dim(k));
  return {double(t.dim(1)) * receptive, double(t.dim(0)) * receptive};
}

/// Kaiming (He) uniform: U(-b, b) with b = gain * sqrt(3 / fan_in); gain = sqrt(2 / (1 + a^2))
/// for leaky-ReLU slope a (a = sqrt(5) gives PyTorch's default nn.Linear init).
template <class T>
void kaiming_uniform(Tensor<T>& t, Rng& rng, double a = 0.0) {
  Fans f = fans(t);
  WEFT_CHECK(f.fan_in > 0, shape, "init::kaiming_uniform", "expected fan_in > 0, got shape ", t.shape());
  double gain = std::sqrt(2.0 / (1.0 + a * a));
  double bound = gain * std::sqrt(3.0 / f.fan_in);
  uniform(t, -bound, bound, rng);
}
/// Kaiming (He) normal: N(0, (gain / sqrt(fan_in))^2).
template <class T>
void kaiming_normal(Tensor<T>& t, Rng& rng, double a = 0.0) {
  Fans f = fans(t);
  WEFT_CHECK(f.fan_in > 0, shape, "init::kaiming_normal", "expected fan_in > 0, got shape ", t.shape());
  double gain = std::sqrt(2.0 / (1.0 + a * a));
  normal(t, 0.0, gain / std::sqrt(f.fan_in), rng);
}
/// Xavier (Glorot) uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
template <class T>
void xavier_uniform(Tensor<T>& t, Rng& rng, double gain = 1.0) {
  Fans f = fans(t);
  WEFT_CHECK(f.fan_in + f.fan_out > 0, shape, "init::xavier_uniform", "expected non-empty fans, got shape ", t.shape());
  double bound = gain * std::sqrt(6.0 / (f.fan_in + f.fan_out));
  uniform(t, -bound, bound, rng);
}
/// Xavier (Glorot) normal: N(0, gain^2 * 2 / (fan_in + fan_out)).
template <class T>
void xavier_normal(Tensor<T>& t, Rng& rng, double gain = 1.0) {
  Fans f = fans(t);
  WEFT_CHECK(f.fan_in + f.fan_out > 0, shape, "init::xavier_normal", "expected non-empty fans, got shape ", t.shape());
  normal(t, 0.0, gain * std::sqrt(2.0 / (f.fan_in + f.fan_out)), rng);
}

}  // namespace init
WEFT_NAMESPACE_END
