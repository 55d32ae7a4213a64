// deploy::Model allocates nothing: this executable replaces the global operator new / delete
// with counting versions and runs deploy::Model (a 2-bit 64-128-10 MLP, and a LayerNorm ->
// packed linear -> GELU -> float head stack) through construction and forwards at batch 1
// and 8 (300 forwards) on caller buffers; the count must stay 0 (and is checked to move when a std::vector
// allocates, so the replacement is live). Results are compared with a double reference from
// the dequantised weights. Compiled with -fno-exceptions -fno-rtti and without OpenMP
// (tests/CMakeLists.txt); it includes no Eigen. Finally a too small workspace must reach the
// installed error handler:
//   deploy_no_heap_test  ->  "0 allocations ... handler got ShapeError: weft::deploy::Model::forward: ..."
// A plain main(), no doctest: doctest itself needs exceptions.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#include "weft/config.hpp"
#include "weft/deploy/model.hpp"

#ifndef WEFT_NO_EXCEPTIONS
#error "compile this test with -fno-exceptions"
#endif
#if defined(__GXX_RTTI) || WEFT_USE_OPENMP || defined(_OPENMP)
#error "compile this test with -fno-rtti and without OpenMP"
#endif
#ifdef EIGEN_WORLD_VERSION
#error "deploy/model.hpp must not include Eigen"
#endif

namespace {
long g_allocations = 0;  // calls of any operator new since the start
}  // namespace

void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  std::abort();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  ++g_allocations;
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a) {
  ++g_allocations;
  const std::size_t al = std::size_t(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  std::abort();
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

using weft::index_t;
namespace deploy = weft::deploy;

std::uint64_t g_state = 0x9E3779B97F4A7C15ull;
double uniform(double lo, double hi) {  // xorshift64*: no weft::Rng, no allocation
  g_state ^= g_state >> 12;
  g_state ^= g_state << 25;
  g_state ^= g_state >> 27;
  return lo + (hi - lo) * double((g_state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

/// A random 2-bit StatsQ-grid layer (codes -2..1, offset 1/2, one step per row).
deploy::PackedWeights<2, 0> random_layer(index_t rows, index_t cols) {
  std::vector<std::int16_t> k(static_cast<std::size_t>(rows * cols));
  for (auto& c : k) c = std::int16_t(-2 + int(uniform(0, 4)) % 4);
  std::vector<float> s(static_cast<std::size_t>(rows));
  for (auto& v : s) v = float(uniform(0.02, 0.2));
  return deploy::pack_codes<2, 0>(rows, cols, k.data(), s.data(), 0.5f, -2);
}

/// y = x W^T + b in double from the dequantised weights, and the scale sum |x w| + |b|.
void reference(const deploy::PackedView<2, 0>& w, const double* x, const float* b, double* y, double* scale) {
  for (index_t r = 0; r < w.rows; ++r) {
    double s = b[r], a = std::abs(double(b[r]));
    for (index_t c = 0; c < w.cols; ++c) {
      s += x[c] * double(w.value(r, c));
      a += std::abs(x[c] * double(w.value(r, c)));
    }
    y[r] = s;
    scale[r] = a;
  }
}

void print_and_exit(weft::ErrorKind kind, const char* message) {
  std::printf("handler got %s: %s\n", weft::to_string(kind), message);
  std::fflush(stdout);
  std::_Exit(0);  // a handler must not return
}

int fail(const char* what, double v) {
  std::printf("FAILED: %s (%g)\n", what, v);
  return 1;
}

}  // namespace

int main() {
  // parameters and buffers: allocated before the counted region
  const auto w1 = random_layer(128, 64), w2 = random_layer(10, 128), wl = random_layer(128, 64);
  std::vector<float> b1(128), b2(10), gamma(64), beta(64), head(10 * 128), x(8 * 64), y(8 * 10), y1(10);
  for (auto& v : b1) v = float(uniform(-0.1, 0.1));
  for (auto& v : b2) v = float(uniform(-0.1, 0.1));
  for (auto& v : gamma) v = float(uniform(0.5, 1.5));
  for (auto& v : beta) v = float(uniform(-0.5, 0.5));
  for (auto& v : head) v = float(uniform(-0.1, 0.1));
  for (auto& v : x) v = float(uniform(0, 1));
  std::vector<float> ws(1 << 16);

  const long before = g_allocations;
  deploy::Model<2, 0> mlp(64);
  mlp.linear(w1.view(), b1.data()).relu().linear(w2.view(), b2.data());
  deploy::Model<2, 0> ln(64);
  ln.layer_norm(gamma.data(), beta.data()).linear(wl.view(), b1.data()).gelu().linear(10, head.data(), b2.data());
  if (mlp.workspace_size(8) > index_t(ws.size()) || ln.workspace_size(8) > index_t(ws.size()))
    return fail("workspace sizes", double(mlp.workspace_size(8)));
  float sum = 0.0f;
  int forwards = 0;
  for (int it = 0; it < 50; ++it, forwards += 6) {
    mlp.forward(x, 8, y, ws);
    sum += y[0];
    ln.forward(x, 8, y, ws);
    sum += y[0];
    for (index_t b = 0; b < 8; b += 4) {
      mlp.forward({x.data() + b * 64, 64}, 1, y1, ws);
      ln.forward({x.data() + b * 64, 64}, 1, y1, ws);
      sum += y1[0];
    }
  }
  const long counted = g_allocations - before;
  {
    std::vector<float> probe(3);  // the counter is live: this must count
    sum += probe[0];
  }
  if (g_allocations - before != counted + 1) return fail("operator new is not the counting one", double(g_allocations));
  if (counted != 0) return fail("allocations in deploy::Model construction and forward", double(counted));
  if (!std::isfinite(sum)) return fail("non-finite outputs", double(sum));

  // the MLP's results against the double reference, every input row
  mlp.forward(x, 8, y, ws);
  double worst = 0;
  for (index_t b = 0; b < 8; ++b) {
    double xd[64], h[128], hs[128], o[10], os[10];
    for (index_t c = 0; c < 64; ++c) xd[c] = x[std::size_t(b * 64 + c)];
    reference(w1.view(), xd, b1.data(), h, hs);
    for (auto& v : h) v = std::max(v, 0.0);
    reference(w2.view(), h, b2.data(), o, os);
    for (index_t r = 0; r < 10; ++r) {
      double s = os[r];  // the first layer's error propagates: bound it by the magnitudes
      for (index_t c = 0; c < 128; ++c) s += std::abs(double(w2.view().value(r, c))) * hs[c];
      worst = std::max(worst, std::abs(double(y[std::size_t(b * 10 + r)]) - o[r]) / s);
    }
  }
  if (!(worst <= 1e-5)) return fail("MLP outputs against the double reference, scaled error", worst);
  std::printf("deploy::Model: 2 models, %d forwards, 0 allocations; MLP scaled error %.2e\n", forwards, worst);

  weft::set_error_handler(&print_and_exit);
  mlp.forward(x, 8, y, {ws.data(), mlp.workspace_size(8) - 1});
  std::printf("FAILED: the failed check returned to its caller\n");
  return 1;
}
