// deploy::Model allocates nothing: this executable replaces the global operator new / delete
// with counting versions and runs deploy::Model (a 2-bit 64-128-10 MLP, and a LayerNorm ->
// packed linear -> GELU -> float head stack) through construction and forwards at batch 1
// and 8 (300 forwards) on caller buffers; the count must stay 0 (and is checked to move when a std::vector
// allocates, so the replacement is live). Results are compared with a double reference from
// the dequantised weights, the QKR attention alone with a double reference of its formula
// (deploy/attention.hpp). Compiled with -fno-exceptions -fno-rtti and without OpenMP
// (tests/CMakeLists.txt); it includes no Eigen. Finally a too small workspace must reach the
// installed error handler:
//   deploy_no_heap_test  ->  "0 allocations ... handler got ShapeError: weft::deploy::Model::forward: ..."
// A plain main(), no doctest: doctest itself needs exceptions.
#include <algorithm>
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
// out of line: GCC would otherwise see std::free on memory from an inlined operator new and
// warn (-Wmismatched-new-delete) although both are the replacements below
[[gnu::noinline]] void release(void* p) noexcept { std::free(p); }
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
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }

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

/// QKR attention of one sample x (N, C) in double from the dequantised weights (deploy/attention.hpp).
void attention_reference(const deploy::QkrAttentionView<2, 0>& a, const float* x, index_t N, double* y) {
  const index_t C = a.dim(), H = a.heads, d = C / H;
  std::vector<double> v(std::size_t(N * C)), o(std::size_t(N * C)), l(static_cast<std::size_t>(N));
  for (index_t m = 0; m < N; ++m)
    for (index_t r = 0; r < C; ++r) {
      double s = a.value_bias[r];
      for (index_t c = 0; c < C; ++c) s += double(a.value.value(r, c)) * x[m * C + c];
      v[std::size_t(m * C + r)] = s;
    }
  for (index_t h = 0; h < H; ++h)
    for (index_t n = 0; n < N; ++n) {
      double mx = -1e300, sum = 0;
      for (index_t m = 0; m < N; ++m) {
        double s = 0;
        for (index_t i = 0; i < C; ++i)
          for (index_t c = 0; c < C; ++c) s += double(x[n * C + i]) * double(a.product.value(h * C + i, c)) * x[m * C + c];
        for (index_t c = 0; c < C; ++c) s += double(x[m * C + c]) * double(a.key_bias[h * C + c]);
        l[std::size_t(m)] = s / std::sqrt(double(a.qk_head_dim));
        mx = std::max(mx, l[std::size_t(m)]);
      }
      for (auto& e : l) sum += (e = std::exp(e - mx));
      for (index_t j = 0; j < d; ++j) {
        double s = 0;
        for (index_t m = 0; m < N; ++m) s += l[std::size_t(m)] / sum * v[std::size_t(m * C + h * d + j)];
        o[std::size_t(n * C + h * d + j)] = s;
      }
    }
  for (index_t n = 0; n < N; ++n)
    for (index_t r = 0; r < C; ++r) {
      double s = a.out_bias[r];
      for (index_t c = 0; c < C; ++c) s += double(a.out.value(r, c)) * o[std::size_t(n * C + c)];
      y[n * C + r] = s;
    }
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
  // the QKR transformer: width 16, 4 heads, 5 tokens, MLP 16 -> 32 -> 16, head 16 -> 10
  const index_t C = 16, N = 5;
  const auto wp = random_layer(4 * C, C), wv = random_layer(C, C), wo = random_layer(C, C);
  const auto f1 = random_layer(2 * C, C), f2 = random_layer(C, 2 * C);
  std::vector<float> bv(C), bo(C), u(4 * C), bf1(2 * C), bf2(C), g(C), bt(C), hw(10 * C), xt(8 * N * C), yt(8 * N * C);
  for (auto* vec : {&bv, &bo, &u, &bf1, &bf2, &bt, &hw}) {
    for (auto& v : *vec) v = float(uniform(-0.2, 0.2));
  }
  for (auto& v : g) v = float(uniform(0.5, 1.5));
  for (auto& v : xt) v = float(uniform(-1, 1));
  deploy::QkrAttentionView<2, 0> av;
  av.product = wp.view();
  av.value = wv.view();
  av.out = wo.view();
  av.value_bias = bv.data();
  av.out_bias = bo.data();
  av.key_bias = u.data();
  av.heads = 4;
  av.qk_head_dim = 4;
  std::vector<float> ws(1 << 16);

  const long before = g_allocations;
  deploy::Model<2, 0> mlp(64);
  mlp.linear(w1.view(), b1.data()).relu().linear(w2.view(), b2.data());
  deploy::Model<2, 0> ln(64);
  ln.layer_norm(gamma.data(), beta.data()).linear(wl.view(), b1.data()).gelu().linear(10, head.data(), b2.data());
  deploy::Model<2, 0> vit(C, N);
  vit.residual_begin().layer_norm(g.data(), bt.data()).qkr_attention(av).residual_add();
  vit.residual_begin().layer_norm(g.data(), bt.data()).linear(f1.view(), bf1.data()).gelu().linear(f2.view(), bf2.data());
  vit.residual_add().layer_norm(g.data(), bt.data()).select_token(0).linear(10, hw.data(), b2.data());
  deploy::Model<2, 0> att(C, N);
  att.qkr_attention(av);
  for (const index_t need : {mlp.workspace_size(8), ln.workspace_size(8), vit.workspace_size(8), att.workspace_size(8)})
    if (need > index_t(ws.size())) return fail("workspace sizes", double(need));
  float sum = 0.0f;
  int forwards = 0;
  for (int it = 0; it < 50; ++it, forwards += 9) {
    vit.forward(xt, 8, y, ws);
    sum += y[0];
    att.forward(xt, 8, yt, ws);
    sum += yt[0];
    vit.forward({xt.data() + 3 * N * C, N * C}, 1, y1, ws);
    sum += y1[0];
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
  // the QKR transformer: batch 1 gives the batch's bits, every sample
  vit.forward(xt, 8, y, ws);
  for (index_t b = 0; b < 8; ++b) {
    vit.forward({xt.data() + b * N * C, N * C}, 1, y1, ws);
    for (index_t j = 0; j < 10; ++j)
      if (y1[std::size_t(j)] != y[std::size_t(b * 10 + j)]) return fail("QKR transformer: batch 1 differs from batch 8 at sample", double(b));
  }
  // the QKR attention against its double formula, every sample: error relative to 1 + max |y|
  att.forward(xt, 8, yt, ws);
  double att_worst = 0;
  for (index_t b = 0; b < 8; ++b) {
    double ref[5 * 16], mx = 1, d = 0;
    attention_reference(av, xt.data() + b * N * C, N, ref);
    for (index_t i = 0; i < N * C; ++i) {
      mx = std::max(mx, std::abs(ref[i]));
      d = std::max(d, std::abs(double(yt[std::size_t(b * N * C + i)]) - ref[i]));
    }
    att_worst = std::max(att_worst, d / mx);
  }
  if (!(att_worst <= 1e-5)) return fail("QKR attention against the double reference, relative error", att_worst);
  std::printf("deploy::Model: 4 models (MLP, LayerNorm stack, QKR transformer, QKR attention), %d forwards, 0 allocations; "
              "MLP scaled error %.2e, QKR attention relative error %.2e\n",
              forwards, worst, att_worst);

  weft::set_error_handler(&print_and_exit);
  mlp.forward(x, 8, y, {ws.data(), mlp.workspace_size(8) - 1});
  std::printf("FAILED: the failed check returned to its caller\n");
  return 1;
}
