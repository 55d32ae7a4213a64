// Tests of weft/deploy/kernels.hpp: the vector GEMV/GEMM and the scalar reference against a
// double product with the dequantised weight on random shapes (1..300 columns, ragged tails,
// batch 1..64) for every (Bits, GroupSize); the int8-activation path against its error bound
// and exactly on inputs its quantisation represents, its vector body bit for bit against its
// scalar reference; bit-identical results for 1-4 threads;
// bad input raises with the inputs and the output untouched.
//
// Tolerance: both float paths sum the terms x_c (u_c + bias) step_c in float in different
// orders, so they differ from the exact result by a few ulps times sum_c |x_c| |w_rc| (+ |b_r|)
// (deploy_test::reference_gemm's scale); with at most 300 columns, 1e-5 of it is a bound with
// a wide margin (n eps = 300 * 6e-8 = 2e-5 is the worst case of recursive summation, which
// random signs do not approach; blocked and per-lane sums are far below it).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "deploy_test_util.hpp"
#include "weft/deploy/int8.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/linear.hpp"
#include "weft/deploy/packed.hpp"

namespace weft_unit_deploy_kernels_test {

using namespace weft;
using namespace weft::deploy_test;

template <int Bits, int GS>
deploy::PackedWeights<Bits, GS> random_packed(index_t rows, index_t cols, Rng& rng, bool with_offset) {
  const Grid g = with_offset ? signed_grid(Bits) : unsigned_grid(Bits);
  const auto codes = random_codes(rows * cols, Bits, g, rng);
  const auto steps = random_steps<Bits, GS>(rows, cols, rng);
  return deploy::pack_codes<Bits, GS>(rows, cols, codes.data(), steps.data(), with_offset ? 0.5f : 0.0f, g.lo);
}

TEST_CASE("deploy/kernels: vector and reference GEMV/GEMM match the dequantised product on random shapes") {
  Rng rng(21);
  for_each_format([&](auto bits_c, auto gs_c) {
    constexpr int Bits = decltype(bits_c)::value, GS = decltype(gs_c)::value;
    double worst_vec = 0, worst_ref = 0;
    for (int trial = 0; trial < 12; ++trial) {
      const index_t rows = 1 + index_t(rng.uniform(0.0, 70.0));
      const index_t cols = trial == 0 ? 300 : 1 + index_t(rng.uniform(0.0, 300.0));
      const index_t batch = trial < 3 ? 1 : (trial == 3 ? 64 : 1 + index_t(rng.uniform(0.0, 64.0)));
      CAPTURE(Bits);
      CAPTURE(GS);
      CAPTURE(rows);
      CAPTURE(cols);
      CAPTURE(batch);
      const auto p = random_packed<Bits, GS>(rows, cols, rng, trial % 2 == 0);
      const auto v = p.view();
      const auto x = uniform_vector<float>(batch * cols, -1, 1, rng);
      const auto bias = uniform_vector<float>(rows, -1, 1, rng);
      const float* bp = trial % 3 == 0 ? nullptr : bias.data();
      std::vector<float> scratch(std::size_t(deploy::gemm_scratch_size(v, batch)));
      std::vector<float> yv(std::size_t(batch * rows)), yr(yv.size());
      deploy::gemm(v, x.data(), batch, yv.data(), bp, scratch.data());
      deploy::gemm_reference(v, x.data(), batch, yr.data(), bp, scratch.data());
      const RefOut ref = reference_gemm(v, x.data(), batch, bp);
      worst_vec = std::max(worst_vec, max_scaled_error(yv, ref));
      worst_ref = std::max(worst_ref, max_scaled_error(yr, ref));
    }
    CAPTURE(Bits);
    CAPTURE(GS);
    CHECK(worst_vec <= 1e-5);
    CHECK(worst_ref <= 1e-5);
  });
}

TEST_CASE("deploy/kernels: linear() on tensors equals gemm, keeps leading axes, adds the bias") {
  Rng rng(22);
  const auto p = random_packed<4, 32>(13, 70, rng, true);
  const Tensor<float> x = test::rand_uniform<float>(Shape{2, 3, 70}, rng, -1, 1);
  const Tensor<float> b = test::rand_uniform<float>(Shape{13}, rng, -1, 1);
  const Tensor<float> y = deploy::linear(p.view(), x, &b);
  CHECK(y.shape() == Shape{2, 3, 13});
  std::vector<float> scratch(std::size_t(deploy::gemm_scratch_size(p.view(), 6))), yy(6 * 13);
  deploy::gemm(p.view(), x.data(), 6, yy.data(), b.data(), scratch.data());
  CHECK(std::memcmp(yy.data(), y.data(), sizeof(float) * yy.size()) == 0);
  const Tensor<float> x1 = test::rand_uniform<float>(Shape{70}, rng, -1, 1);  // GEMV on a vector
  CHECK(deploy::linear(p.view(), x1).shape() == Shape{13});
}

template <int Bits, int GS>
void check_int8(Rng& rng) {
  for (int trial = 0; trial < 8; ++trial) {
    const index_t rows = 1 + index_t(rng.uniform(0.0, 40.0));
    const index_t cols = trial == 0 ? 512 : (trial == 1 ? 256 : 1 + index_t(rng.uniform(0.0, 700.0)));  // 0..2 vector blocks
    const index_t batch = 1 + index_t(rng.uniform(0.0, 9.0));
    CAPTURE(Bits);
    CAPTURE(GS);
    CAPTURE(cols);
    const auto p = random_packed<Bits, GS>(rows, cols, rng, trial % 2 == 0);
    const auto v = p.view();
    auto x = uniform_vector<float>(batch * cols, -2, 2, rng);
    const auto bias = uniform_vector<float>(rows, -1, 1, rng);
    std::vector<unsigned char> scratch(std::size_t(deploy::gemm_int8_scratch_bytes(v, batch)));
    std::vector<float> y(std::size_t(batch * rows));
    deploy::gemm_int8(v, x.data(), batch, y.data(), bias.data(), scratch.data());
    // the vector body (exact int32 dots, groups flushed in order) has the reference's bits
    std::vector<float> yr(y.size());
    deploy::gemm_int8_reference(v, x.data(), batch, yr.data(), bias.data(), scratch.data());
    CHECK(same_bits(y, yr));
    const RefOut ref = reference_gemm(v, x.data(), batch, bias.data());
    // bound: activation rounding a / 2 per element times sum_c |w_rc|, plus float roundoff
    bool ok = true;
    for (index_t b = 0; b < batch; ++b) {
      double m = 0;
      for (index_t c = 0; c < cols; ++c) m = std::max(m, std::abs(double(x[std::size_t(b * cols + c)])));
      const double a = m / 127;
      for (index_t r = 0; r < rows; ++r) {
        double wsum = 0;
        for (index_t c = 0; c < cols; ++c) wsum += std::abs(double(v.value(r, c)));
        const std::size_t i = std::size_t(b * rows + r);
        ok = ok && std::abs(double(y[i]) - ref.y[i]) <= a / 2 * wsum * (1 + 1e-6) + 1e-5 * ref.scale[i];
      }
    }
    CHECK(ok);
    // integer inputs with max |x| = 127 quantise exactly (a = 1): the float-path accuracy
    for (index_t b = 0; b < batch; ++b)
      for (index_t c = 0; c < cols; ++c)
        x[std::size_t(b * cols + c)] = c == 0 ? 127.0f : std::nearbyint(float(rng.uniform(-127.0, 127.0)));
    deploy::gemm_int8(v, x.data(), batch, y.data(), bias.data(), scratch.data());
    CHECK(max_scaled_error(y, reference_gemm(v, x.data(), batch, bias.data())) <= 1e-5);
  }
}

TEST_CASE("deploy/kernels: the int8-activation path for 2 and 4 bits within its rounding bound") {
  Rng rng(23);
  check_int8<2, 0>(rng);
  check_int8<2, 32>(rng);
  check_int8<2, 128>(rng);
  check_int8<4, 0>(rng);
  check_int8<4, 64>(rng);
  // all-zero input: scale 0, y = bias
  const auto p = random_packed<2, 32>(5, 40, rng, true);
  const Tensor<float> z(Shape{2, 40});
  const Tensor<float> b = test::rand_uniform<float>(Shape{5}, rng, -1, 1);
  const Tensor<float> y = deploy::linear_int8(p.view(), z, &b);
  for (index_t i = 0; i < 10; ++i) CHECK(y.flat(i) == b.flat(i % 5));
}

TEST_CASE("deploy/kernels: 1-4 threads give the same bits (GEMV, GEMM, reference, int8)") {
  ThreadCountGuard guard;
  Rng rng(24);
  const auto p2 = random_packed<2, 32>(300, 257, rng, true);
  const auto p4 = random_packed<4, 0>(300, 257, rng, false);
  for (index_t batch : {index_t(1), index_t(7)}) {
    const Tensor<float> x = test::rand_uniform<float>(Shape{batch, 257}, rng, -1, 1);
    auto run = [&] {
      std::vector<float> out;
      for (const Tensor<float>& t : {deploy::linear(p2.view(), x), deploy::linear(p4.view(), x),
                                     deploy::linear_int8(p2.view(), x), deploy::linear_int8(p4.view(), x)})
        out.insert(out.end(), t.data(), t.data() + t.numel());
      std::vector<float> scratch(std::size_t(deploy::gemm_scratch_size(p2.view(), batch))), y(std::size_t(batch * 300));
      deploy::gemm_reference(p2.view(), x.data(), batch, y.data(), nullptr, scratch.data());
      out.insert(out.end(), y.begin(), y.end());
      return out;
    };
    set_num_threads(1);
    const auto one = run();
    for (int n = 2; n <= 4; ++n) {
      set_num_threads(n);
      CHECK(same_bits(run(), one));
    }
  }
}

TEST_CASE("deploy/kernels: an output row has the same bits whatever the batch it is computed in") {
  Rng rng(26);
  const auto p0 = random_packed<2, 0>(37, 300, rng, true);   // 4 x 4 tiles (one step per row)
  const auto p1 = random_packed<4, 32>(37, 300, rng, true);  // 1 x 4 tiles (groups)
  const Tensor<float> x = test::rand_uniform<float>(Shape{9, 300}, rng, -1, 1);
  const Tensor<float> y0 = deploy::linear(p0.view(), x), y1 = deploy::linear(p1.view(), x);
  bool same = true;
  for (index_t b = 0; b < 9; ++b) {
    const Tensor<float> xb = x.slice(0, b, b + 1);
    const Tensor<float> r0 = deploy::linear(p0.view(), xb), r1 = deploy::linear(p1.view(), xb);
    same = same && std::memcmp(r0.data(), y0.data() + b * 37, 37 * sizeof(float)) == 0 &&
           std::memcmp(r1.data(), y1.data() + b * 37, 37 * sizeof(float)) == 0;
  }
  CHECK(same);
}

TEST_CASE("deploy/kernels: bad input raises with inputs and output untouched") {
  Rng rng(25);
  const auto p = random_packed<2, 0>(6, 20, rng, true);
  const auto v = p.view();
  const Tensor<float> b = test::rand_uniform<float>(Shape{6}, rng, -1, 1);
  Tensor<float> x = test::rand_uniform<float>(Shape{3, 20}, rng, -1, 1);
  WEFT_DEPLOY_CHECK_FAILS(deploy::linear(v, test::rand_uniform<float>(Shape{3, 21}, rng, -1, 1)), ShapeError, "deploy::linear");
  WEFT_DEPLOY_CHECK_FAILS(deploy::linear(v, Tensor<float>(Shape{0, 20})), ShapeError, "deploy::linear");
  const Tensor<float> b5 = test::rand_uniform<float>(Shape{5}, rng, -1, 1);
  WEFT_DEPLOY_CHECK_FAILS(deploy::linear(v, x, &b5), ShapeError, "deploy::linear");
  WEFT_DEPLOY_CHECK_FAILS(deploy::linear_int8(v, x, &b5), ShapeError, "deploy::linear_int8");
  x.flat(25) = std::numeric_limits<float>::quiet_NaN();
  test::Snapshot<float> snap({x, b});
  WEFT_DEPLOY_CHECK_FAILS(deploy::linear(v, x, &b), ValueError, "deploy::linear");
  WEFT_DEPLOY_CHECK_FAILS(deploy::linear_int8(v, x, &b), ValueError, "deploy::linear_int8");
  CHECK(snap.unchanged());
  // the pointer API: nothing written to y on error
  std::vector<float> scratch(std::size_t(deploy::gemm_scratch_size(v, 3))), y(18, 7.0f);
  WEFT_DEPLOY_CHECK_FAILS(deploy::gemm(v, x.data(), 3, y.data(), nullptr, scratch.data()), ValueError, "deploy::gemm");
  WEFT_DEPLOY_CHECK_FAILS(deploy::gemm_reference(v, x.data(), 3, y.data(), nullptr, scratch.data()), ValueError,
                          "deploy::gemm_reference");
  WEFT_DEPLOY_CHECK_FAILS(deploy::gemm(v, x.data(), 0, y.data(), nullptr, scratch.data()), ShapeError, "deploy::gemm");
  WEFT_DEPLOY_CHECK_FAILS(deploy::gemm(v, x.data(), 3, y.data(), nullptr, nullptr), ValueError, "deploy::gemm");
  CHECK(y == std::vector<float>(18, 7.0f));
  deploy::PackedView<2, 0> empty;
  WEFT_DEPLOY_CHECK_FAILS(deploy::linear(empty, x), ShapeError, "deploy::linear");
}

}  // namespace weft_unit_deploy_kernels_test
