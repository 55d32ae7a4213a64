// Composition of the weight compander (weft/reparam, Psi(v) = a atan(v / b)) with a quantiser
// on the same nn::Linear (issue 10): the chain v -> Psi(v) -> Q(Psi(v)). Only this test file
// includes both families; include/weft/quant never includes weft/reparam.
// Checked: the forward equals the quantiser's kernel applied to the compander's fold, bit for
// bit; the gradient of v is dL/dQ Psi'(v) (identity STE after the compander's chain rule; LSQ:
// the STE mask too); exported codes dequantise to the folded weight.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "quant_test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/nn/linear.hpp"
#include "weft/quant/lsq.hpp"
#include "weft/quant/statsq.hpp"
#include "weft/quant/wrap.hpp"
#include "weft/reparam/compander.hpp"

namespace weft_unit_quant_compander_compose_test {

using namespace weft;

TEST_CASE_TEMPLATE("quant/compose: StatsQ and LSQ on Psi(v) of the weight compander", T, float, double) {
  Rng rng(21);
  for (int kind = 0; kind < 2; ++kind) {
    nn::Linear<T> layer(16, 6, rng);
    auto wc = std::make_shared<reparam::Compander<T>>();  // a = b = 0.7
    layer.add_transform(wc);
    const Tensor<T> v = layer.weight.value().clone();
    const Tensor<T> w = wc->fold(v);  // Psi(v)
    std::shared_ptr<quant::WeightQuantizer<T>> q;
    if (kind == 0) q = quant::statsq<2, T>();
    else q = quant::lsq<2>(w);
    const quant::QuantizedLayer<T> ql = quant::quantize_linear(layer, q);

    // forward: the quantiser's kernel on Psi(v)
    Tensor<T> expect(w.shape());
    if (kind == 0) {
      ops::StatsqOut<T> out;
      out.q = expect.data();
      ops::statsq_forward_scalar(w.data(), ops::FqGeometry{1, 6, 16}, 2, out);
    } else {
      auto* lq = dynamic_cast<quant::LsqQuantizerBase<T>*>(q.get());
      REQUIRE(lq != nullptr);
      ops::LsqParams<T> ps;
      ps.s = lq->scale.value().data();
      ps.count = 6;
      std::vector<ops::qcode_t> codes(6 * 16);
      ops::lsq_forward_scalar(w.data(), 6, 16, ps, ops::lsq_range(2, true), expect.data(), codes.data());
    }
    CHECK(test::identical(layer.folded_weight(), expect));

    // backward: a loss sum(G * Q(Psi(v))) with a random G gives dL/dv = G mask Psi'(v)
    const Tensor<T> G = test::randn<T>(Shape{6, 16}, rng);
    layer.weight.zero_grad();
    Tape<T> t;
    t.backward(sum(layer.effective_weight(t) * t.constant(G)));
    std::vector<T> d(std::size_t(v.numel()));
    wc->derivative(v.data(), d.data(), v.numel());
    const auto* lq = dynamic_cast<quant::LsqQuantizerBase<T>*>(q.get());
    for (index_t i = 0; i < v.numel(); ++i) {
      double mask = 1.0;
      if (kind == 1) {  // LSQ: inclusive STE mask |w / s| within [-2, 1]
        const double vv = double(w.flat(i)) / double(lq->scale.value().flat(i / 16));
        mask = (vv >= -2 && vv <= 1) ? 1.0 : 0.0;
      }
      const double ref = double(G.flat(i)) * mask * double(d[std::size_t(i)]);
      CHECK(double(layer.weight.grad().flat(i)) == doctest::Approx(ref).epsilon(std::is_same_v<T, float> ? 1e-6 : 1e-14));
    }

    // export: the codes dequantise to the folded weight
    const quant::QuantizedWeights<T> e = quant::export_weights(ql);
    CHECK(test::identical(e.dequantize(), layer.folded_weight()));
  }
}

}  // namespace weft_unit_quant_compander_compose_test
