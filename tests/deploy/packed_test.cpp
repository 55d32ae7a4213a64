// Tests of weft/deploy/packed.hpp and from_quant.hpp: pack/unpack round trips for every
// (Bits, GroupSize) on random codes with ragged column counts, the word layout bit by bit, the
// lossless packing of exported QuantizedWeights (codes and dequantised weight bit for bit; per
// row, per tensor, finer groups, StatsQ / LSQ signed / unsigned / 1-bit sign grids), bytes(),
// and bad input (inconsistent structs, codes off the grid, bit-width mismatch) -> weft::Error.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "deploy_test_util.hpp"
#include "weft/deploy/from_quant.hpp"
#include "weft/deploy/packed.hpp"

namespace weft_unit_deploy_packed_test {

using namespace weft;
using namespace weft::deploy_test;

TEST_CASE("deploy/packed: pack_codes round trip for every Bits x GroupSize, ragged columns included") {
  Rng rng(11);
  for_each_format([&](auto bits_c, auto gs_c) {
    constexpr int Bits = decltype(bits_c)::value, GS = decltype(gs_c)::value;
    using F = deploy::PackedFormat<Bits, GS>;
    for (index_t cols : {index_t(1), index_t(9), index_t(10), index_t(31), index_t(33), index_t(100), index_t(129),
                         index_t(257)}) {
      CAPTURE(Bits);
      CAPTURE(GS);
      CAPTURE(cols);
      const index_t rows = 3;
      for (Grid g : {signed_grid(Bits), unsigned_grid(Bits)}) {
        const auto codes = random_codes(rows * cols, Bits, g, rng);
        const auto steps = random_steps<Bits, GS>(rows, cols, rng);
        const float offset = g.lo < 0 ? 0.5f : 0.0f;
        const auto p = deploy::pack_codes<Bits, GS>(rows, cols, codes.data(), steps.data(), offset, g.lo);
        CHECK(p.words.size() == std::size_t(rows * ((cols + F::per_word - 1) / F::per_word)));
        CHECK(p.steps.size() == std::size_t(rows * (GS == 0 ? 1 : (cols + GS - 1) / GS)));
        CHECK(p.unpack_codes() == codes);
        // dequantised value (code + offset) * step of the element's group, bit for bit
        const auto w = p.dequantize();
        bool same = true;
        for (index_t r = 0; r < rows; ++r)
          for (index_t c = 0; c < cols; ++c) {
            const float s = steps[std::size_t(r * F::groups_per_row(cols) + (GS == 0 ? 0 : c / GS))];
            const float e = (float(codes[std::size_t(r * cols + c)]) + offset) * s;
            same = same && std::memcmp(&e, &w[std::size_t(r * cols + c)], sizeof e) == 0;
          }
        CHECK(same);
        CHECK(p.bytes() == std::size_t(rows) * (4 * ((cols + F::per_word - 1) / F::per_word) + 4 * F::groups_per_row(cols)));
      }
    }
  });
}

TEST_CASE("deploy/packed: the word layout, code j in bits [j Bits, (j + 1) Bits), each row on a new word") {
  // 2 bits: 16 codes per word, signed codes -2..1 stored as u = code + 2
  std::vector<std::int16_t> k2 = {-2, -1, 0, 1, 1, 0, -1, -2, -2, -2, -2, -2, -2, -2, -2, 1, /* row 0, col 16: */ 0,
                                  /* row 1: */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1};
  const float s2[2] = {1.0f, 1.0f};
  const auto p2 = deploy::pack_codes<2, 0>(2, 17, k2.data(), s2, 0.5f, -2);
  REQUIRE(p2.words.size() == 4);
  CHECK(p2.words[0] == 0xC0001BE4u);  // u = 0 1 2 3 3 2 1 0 0 ... 0 3, two bits each from bit 0
  CHECK(p2.words[1] == 0x2u);  // col 16 (code 0 -> u 2), unused slots zero
  CHECK(p2.words[2] == 0xFFFFFFFFu);
  CHECK(p2.words[3] == 0x1u);
  // 3 bits: 10 codes per word, bits 30-31 zero
  std::vector<std::int16_t> k3(12, 3);  // unsigned u = 3 - (-4) = 7
  const float s3 = 1.0f;
  const auto p3 = deploy::pack_codes<3, 0>(1, 12, k3.data(), &s3, 0.5f, -4);
  REQUIRE(p3.words.size() == 2);
  CHECK(p3.words[0] == 0x3FFFFFFFu);
  CHECK(p3.words[1] == 0x3Fu);
  CHECK(p3.bits_per_weight() == doctest::Approx(8.0 * (8 + 4) / 12));
}

TEST_CASE("deploy/packed: validate rejects inconsistent structs; pack_codes rejects codes off the grid") {
  std::vector<std::int16_t> k = {-2, 1, 0, -1};
  const float s[2] = {0.5f, 0.25f};
  auto p = deploy::pack_codes<2, 0>(2, 2, k.data(), s, 0.5f, -2);
  CHECK_NOTHROW(p.validate());
  auto bad = p;
  bad.words.push_back(0);
  WEFT_DEPLOY_CHECK_FAILS(bad.validate(), ShapeError, "deploy::PackedWeights::validate");
  bad = p;
  bad.steps[1] = std::numeric_limits<float>::quiet_NaN();
  WEFT_DEPLOY_CHECK_FAILS(bad.validate(), ValueError, "deploy::PackedWeights::validate");
  bad = p;
  bad.words[0] |= 0x80000000u;  // a bit outside the 2 codes of the row
  WEFT_DEPLOY_CHECK_FAILS(bad.validate(), ValueError, "deploy::PackedWeights::validate");
  WEFT_DEPLOY_CHECK_FAILS(bad.dequantize(), ValueError, "deploy::PackedWeights::dequantize");
  bad = p;
  bad.code_scale = 2;  // only for 1-bit sign codes
  WEFT_DEPLOY_CHECK_FAILS(bad.validate(), ValueError, "deploy::PackedWeights::validate");
  bad = p;
  bad.rows = 0;
  WEFT_DEPLOY_CHECK_FAILS(bad.validate(), ShapeError, "deploy::PackedWeights::validate");
  deploy::PackedView<2, 0> v;  // empty view
  WEFT_DEPLOY_CHECK_FAILS(v.validate(), ShapeError, "deploy::PackedView::validate");
  // codes outside [-2, 1], steps not finite, no rows
  std::vector<std::int16_t> off = {-3, 0, 0, 0};
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack_codes<2, 0>(2, 2, off.data(), s, 0.5f, -2)), ValueError, "deploy::pack_codes");
  off = {2, 0, 0, 0};
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack_codes<2, 0>(2, 2, off.data(), s, 0.5f, -2)), ValueError, "deploy::pack_codes");
  const float inf[2] = {std::numeric_limits<float>::infinity(), 1.0f};
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack_codes<2, 0>(2, 2, k.data(), inf, 0.5f, -2)), ValueError, "deploy::pack_codes");
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack_codes<2, 0>(0, 2, k.data(), s, 0.5f, -2)), ShapeError, "deploy::pack_codes");
}

/// A QuantizedWeights of shape (rows, cols) with the given geometry, codes on grid g, random steps.
quant::QuantizedWeights<float> make_qw(index_t rows, index_t cols, int bits, Grid g, float offset, ops::FqGeometry geo,
                                      const char* scheme, Rng& rng) {
  quant::QuantizedWeights<float> q;
  q.shape = Shape{rows, cols};
  q.geometry = geo;
  q.bits = bits;
  q.scheme = scheme;
  q.codes = random_codes(rows * cols, bits, g, rng);
  q.step = uniform_vector<float>(geo.groups, 0.01, 0.2, rng);
  q.offset = offset;
  return q;
}

template <int Bits, int GS>
void check_lossless(const quant::QuantizedWeights<float>& q) {
  const auto p = deploy::pack<Bits, GS>(q);
  CHECK(p.unpack_codes() == q.codes);
  const Tensor<float> d = q.dequantize();
  const auto w = p.dequantize();
  CHECK(std::memcmp(d.data(), w.data(), sizeof(float) * w.size()) == 0);
}

TEST_CASE("deploy/pack: exported codes pack losslessly (StatsQ, LSQ signed / unsigned / 1-bit sign; row, tensor, groups)") {
  Rng rng(12);
  for (index_t cols : {index_t(64), index_t(100)}) {
    const index_t rows = 5;
    const ops::FqGeometry per_row{1, rows, cols}, per_tensor{1, 1, rows * cols};
    // StatsQ: signed codes, offset 1/2; LSQ: signed or unsigned, offset 0
    check_lossless<2, 0>(make_qw(rows, cols, 2, signed_grid(2), 0.5f, per_row, "statsq", rng));
    check_lossless<2, 32>(make_qw(rows, cols, 2, signed_grid(2), 0.5f, per_row, "statsq", rng));
    check_lossless<3, 64>(make_qw(rows, cols, 3, signed_grid(3), 0.5f, per_tensor, "statsq", rng));
    check_lossless<4, 128>(make_qw(rows, cols, 4, signed_grid(4), 0.0f, per_row, "lsq", rng));
    check_lossless<4, 0>(make_qw(rows, cols, 4, unsigned_grid(4), 0.0f, per_tensor, "lsq", rng));
    check_lossless<8, 32>(make_qw(rows, cols, 8, signed_grid(8), 0.0f, per_row, "lsq", rng));
    check_lossless<8, 0>(make_qw(rows, cols, 8, unsigned_grid(8), 0.0f, per_row, "lsq", rng));
    check_lossless<1, 0>(make_qw(rows, cols, 1, signed_grid(1), 0.5f, per_row, "statsq", rng));  // codes {-1, 0}
    check_lossless<1, 64>(make_qw(rows, cols, 1, Grid{-1, 2}, 0.0f, per_row, "lsq", rng));      // sign codes {-1, +1}
  }
  // groups of 32 columns as a (rows, cols / 32, 32) geometry fit GroupSize 32, not 64
  const auto fine = make_qw(4, 96, 2, signed_grid(2), 0.5f, ops::FqGeometry{4, 3, 32}, "statsq", rng);
  check_lossless<2, 32>(fine);
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack<2, 64>(fine)), ConfigError, "deploy::pack");
}

TEST_CASE("deploy/pack: bad QuantizedWeights raise and name deploy::pack") {
  Rng rng(13);
  auto q = make_qw(3, 40, 2, signed_grid(2), 0.5f, ops::FqGeometry{1, 3, 40}, "statsq", rng);
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack<4, 0>(q)), ConfigError, "deploy::pack");  // bits mismatch
  auto bad = q;
  bad.codes.pop_back();
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack<2, 0>(bad)), ShapeError, "deploy::pack");
  bad = q;
  bad.step[1] = std::numeric_limits<float>::infinity();
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack<2, 0>(bad)), ValueError, "deploy::pack");
  bad = q;
  bad.shape = Shape{120};
  bad.geometry = ops::FqGeometry{1, 1, 120};
  bad.step.resize(1);
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack<2, 0>(bad)), ShapeError, "deploy::pack");
  bad = q;
  bad.codes[5] = 3;  // in the unsigned 2-bit range, but with negative codes elsewhere: no single grid
  bad.codes[6] = -2;
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack<2, 0>(bad)), ValueError, "deploy::pack_codes");
  // the 1-bit mix {-1, 0, 1} has no 1-bit grid
  auto one = make_qw(1, 3, 1, Grid{-1, 1}, 0.0f, ops::FqGeometry{1, 1, 3}, "lsq", rng);
  one.codes = {-1, 0, 1};
  WEFT_DEPLOY_CHECK_FAILS((deploy::pack<1, 0>(one)), ValueError, "deploy::pack_codes");
  // the input is untouched by a failed pack
  const auto copy = q;
  CHECK_THROWS((deploy::pack<4, 0>(q)));
  CHECK(copy.codes == q.codes);
}

}  // namespace weft_unit_deploy_packed_test
