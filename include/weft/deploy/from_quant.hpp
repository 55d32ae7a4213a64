// weft/deploy/from_quant.hpp - deploy::pack<Bits, GroupSize>(quant::QuantizedWeights<float>):
// the exported codes and steps of a quantised layer (quant::export_weights) as packed weights.
// The one deploy header that includes quant/; the packed types and kernels need only core/.
//
//   auto att = quant::quantize_linears(mlp, quant::statsq_factory<float>(so));  // 2-bit, per row
//   auto qw = quant::export_weights(att.layers[0]);            // the quantiser from the record
//   auto pw = deploy::pack<2, 0>(qw);                           // 2 bits + one step per row
//   Tensor<float> y = deploy::linear(pw.view(), x, &mlp.layers[0].bias.value());
//
// Grid. The packer picks code_min from the codes: 0 when none is negative (LSQ unsigned, or any
// grid whose codes happen to be >= 0), -1 with code_scale 2 for 1-bit sign codes {-1, +1}
// (LSQ signed 1-bit), else -2^(Bits-1) (StatsQ, LSQ signed). Any choice that holds every code
// gives the same values, so the packing is lossless: unpack_codes() returns qw.codes and
// dequantize() returns qw.dequantize() bit for bit (packed.hpp explains why).
// Steps. Every packed group (GroupSize columns of one row, or the row) must have one step in
// qw: per-row and per-tensor steps fit every GroupSize (repeated), a finer geometry (e.g.
// (rows, cols / 32, 32)) fits GroupSize 32 when its groups line up.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "weft/deploy/packed.hpp"
#include "weft/quant/quantizer.hpp"

namespace weft::deploy {

/// Packs exported codes losslessly (see the file comment); raises ConfigError when qw.bits is
/// not Bits or a packed group would need two steps, ShapeError unless qw is a matrix, and
/// whatever qw.validate() raises for an inconsistent struct.
template <int Bits, int GroupSize>
PackedWeights<Bits, GroupSize> pack(const quant::QuantizedWeights<float>& qw) {
  using F = PackedFormat<Bits, GroupSize>;
  const char* fn = "deploy::pack";
  qw.validate(fn);
  WEFT_CHECK(qw.shape.rank() == 2, shape, fn, "expected codes of a rank-2 (out, in) weight, got shape ", qw.shape);
  WEFT_CHECK(qw.bits == Bits, config, fn, "expected ", Bits, "-bit codes for PackedWeights<", Bits, ", ", GroupSize, ">, got ",
             qw.bits, " bits");
  const index_t rows = qw.shape[0], cols = qw.shape[1];
  const auto [lo_it, hi_it] = std::minmax_element(qw.codes.begin(), qw.codes.end());
  const int lo = *lo_it, hi = *hi_it;
  int code_min = -(1 << (Bits - 1)), code_scale = 1;
  if (lo >= 0) code_min = 0;
  else if (Bits == 1 && hi == 1) code_scale = 2;  // sign codes {-1, +1}; a 0 among them is rejected by pack_codes
  // the step of element i: group m = (i / inner) mod groups of the (outer, groups, inner) view
  const ops::FqGeometry& g = qw.geometry;
  auto step_of = [&](index_t i) { return qw.step[std::size_t((i / g.inner) % g.groups)]; };
  const index_t gpr = F::groups_per_row(cols), gc = F::group_cols(cols);
  std::vector<float> steps(std::size_t(rows * gpr));
  for (index_t r = 0; r < rows; ++r)
    for (index_t k = 0; k < gpr; ++k) {
      const index_t c0 = k * gc, c1 = std::min(cols, c0 + gc);
      const float s = step_of(r * cols + c0);
      for (index_t c = c0 + 1; c < c1; ++c) {
        const float t = step_of(r * cols + c);
        WEFT_CHECK(std::memcmp(&s, &t, sizeof s) == 0, config, fn, "expected one step per packed group of ", gc,
                   " columns, got steps ", s, " and ", t, " in row ", r, ", columns ", c0, "..", c1 - 1);
      }
      steps[std::size_t(r * gpr + k)] = s;
    }
  return pack_codes<Bits, GroupSize>(rows, cols, qw.codes.data(), steps.data(), qw.offset, code_min, code_scale);
}

}  // namespace weft::deploy
