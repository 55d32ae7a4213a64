// A 2-bit 64-128-10 MLP for a Cortex-M4 as deploy::Model over const arrays: the compile-only
// check of scripts/cross_check (arm-none-eabi-g++ -mcpu=cortex-m4 -mthumb -fno-exceptions
// -fno-rtti, scalar path, no OpenMP, no Eigen), built as three objects so that
// arm-none-eabi-size can tell the weights from the code:
//   WEFT_M4_PART=1  weights.o    packed codes, steps and biases (const, in flash)
//   WEFT_M4_PART=2  inference.o  the model, its workspace and weft_m4_classify()
//   WEFT_M4_PART=3  main.o       a main() for the linked image
// The weights are made up (a fixed pseudo-random pattern): only their layout and size matter
// here; tests/deploy/no_heap_test.cpp checks the same model type's results on the host.
#include <array>
#include <cstdint>

#include "weft/deploy/packed.hpp"

#ifdef EIGEN_WORLD_VERSION
#error "the deploy headers must not include Eigen"
#endif

namespace m4 {
using weft::deploy::word_t;
constexpr int in = 64, hidden = 128, out = 10;
constexpr int w1_words = hidden * (in / 16), w2_words = out * (hidden / 16);  // 16 2-bit codes per word

extern const std::array<word_t, w1_words> w1;
extern const std::array<float, hidden> s1, b1;
extern const std::array<word_t, w2_words> w2;
extern const std::array<float, out> s2, b2;
}  // namespace m4

#if WEFT_M4_PART == 1
namespace m4 {
namespace {
template <std::size_t N>
constexpr std::array<word_t, N> words(std::uint32_t seed) {
  std::array<word_t, N> a{};
  for (std::size_t i = 0; i < N; ++i) {
    seed = seed * 1664525u + 1013904223u;
    a[i] = seed;
  }
  return a;
}
template <std::size_t N>
constexpr std::array<float, N> floats(float lo, float step) {
  std::array<float, N> a{};
  for (std::size_t i = 0; i < N; ++i) a[i] = lo + step * float(i % 7);
  return a;
}
}  // namespace
extern const std::array<word_t, w1_words> w1 = words<w1_words>(1u);
extern const std::array<float, hidden> s1 = floats<hidden>(0.02f, 0.01f);
extern const std::array<float, hidden> b1 = floats<hidden>(-0.03f, 0.01f);
extern const std::array<word_t, w2_words> w2 = words<w2_words>(2u);
extern const std::array<float, out> s2 = floats<out>(0.05f, 0.01f);
extern const std::array<float, out> b2 = floats<out>(-0.02f, 0.01f);
}  // namespace m4

#elif WEFT_M4_PART == 2
#include "weft/deploy/model.hpp"

namespace m4 {
namespace {
weft::deploy::PackedView<2, 0> view(const word_t* w, const float* s, int rows, int cols) {
  weft::deploy::PackedView<2, 0> v;
  v.rows = rows;
  v.cols = cols;
  v.words = w;
  v.steps = s;
  v.offset = 0.5f;  // StatsQ: codes -2..1 stored as u = k + 2
  v.code_min = -2;
  return v;
}
weft::deploy::Model<2, 0, 4> model(in);
float workspace[2 * hidden + 1];  // workspace_size(1) on the scalar path
}  // namespace
}  // namespace m4

/// Builds the model (once, at start-up); false when the workspace is too small.
bool weft_m4_init() {
  m4::model.linear(m4::view(m4::w1.data(), m4::s1.data(), m4::hidden, m4::in), m4::b1.data())
      .relu()
      .linear(m4::view(m4::w2.data(), m4::s2.data(), m4::out, m4::hidden), m4::b2.data());
  return m4::model.workspace_size(1) <= weft::index_t(sizeof m4::workspace / sizeof(float));
}

/// The class of one 8x8 image (64 floats); logits: 10 floats.
int weft_m4_classify(const float* x, float* logits) {
  m4::model.forward({x, m4::in}, 1, {logits, m4::out}, {m4::workspace, weft::index_t(sizeof m4::workspace / sizeof(float))});
  int best = 0;
  for (int j = 1; j < m4::out; ++j)
    if (logits[j] > logits[best]) best = j;
  return best;
}

#elif WEFT_M4_PART == 3
bool weft_m4_init();
int weft_m4_classify(const float* x, float* logits);

int main() {
  static float x[64], logits[10];
  for (int i = 0; i < 64; ++i) x[i] = float(i % 16) / 16.0f;
  if (!weft_m4_init()) return 2;
  return weft_m4_classify(x, logits) >= 0 ? 0 : 1;
}
#else
#error "define WEFT_M4_PART as 1, 2 or 3 (scripts/cross_check)"
#endif
