// Tests of weft/quant/qkr.hpp: unquantised QKR equals standard attention (1e-5 float, 1e-12
// double) with the exact bias policy, and with the drop policy when b_q = 0; a float64 gradient
// check of unquantised QKR; the quantised backward dL/dW_q^h = W_k^h G^T, dL/dW_k^h = W_q^h G
// checked analytically; per-(head, row) scales; input, intermediate and gate options; the block
// wrapper; q/k projections of width d_qk != C (against a plain reference, float64 gradient
// check); bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "nn/nn_test_util.hpp"
#include "quant_test_util.hpp"
#include "weft/quant/qkr.hpp"

namespace weft_unit_quant_qkr_test {

using namespace weft;
using weft::nn_test::contract;
using weft::nn_test::param_grad_check;

namespace {

template <class T>
Tensor<T> run(nn::Module<T>& m, const Tensor<T>& x, bool qkr) {
  Tape<T> t;
  no_grad ng;
  Var<T> xv = t.constant(x);
  Var<T> y = qkr ? static_cast<quant::QkrAttention<T>&>(m)(xv) : static_cast<nn::MultiHeadAttention<T>&>(m)(xv);
  return y.value().clone();
}

/// x -> a x (an input transform to see where QKR applies its quantisers).
template <class T>
struct ScaleInput : nn::InputTransform<T> {
  T a;
  Shape seen;
  explicit ScaleInput(T v) : a(v) {}
  std::string name() const override { return "scale"; }
  Var<T> apply(const Var<T>& x) override {
    seen = x.shape();
    return x * a;
  }
};

/// M -> M + D with a constant D (same values as a quantiser whose M_hat = M + D, identity
/// gradient); keeps its output so a test can read dL/dM_hat.
template <class T>
struct ShiftTransform : nn::WeightTransform<T> {
  Tensor<T> d;
  Var<T> last;
  std::string name() const override { return "shift"; }
  Var<T> apply(const Var<T>& w) override { return last = w + w.tape().constant(d); }
};

template <class T>
double max_diff(const Tensor<T>& a, const Tensor<T>& b) {
  return double((a.array() - b.array()).abs().maxCoeff());
}

/// Replaces q_proj and k_proj of mha by Linear(C, dqk) layers (with bias).
template <class T>
void set_qk_width(nn::MultiHeadAttention<T>& mha, index_t dqk, Rng& rng) {
  mha.q_proj = nn::Linear<T>(mha.v_proj.in_features(), dqk, rng);
  mha.k_proj = nn::Linear<T>(mha.v_proj.in_features(), dqk, rng);
}

/// Attention with q/k heads of width dqk / H and v heads of width C / H, by loops in double:
/// out_proj(concat_h softmax(q_h k_h^T / sqrt(dqk / H)) v_h), with every bias.
Tensor<double> attention_reference(nn::MultiHeadAttention<double>& mha, const Tensor<double>& x) {
  const index_t B = x.dim(0), N = x.dim(1), C = x.dim(2), H = mha.heads();
  const index_t dq = mha.q_proj.out_features() / H, dv = C / H;
  auto proj = [&](nn::Linear<double>& l) {
    Tensor<double> y(Shape{B, N, l.out_features()});
    for (index_t b = 0; b < B; ++b)
      for (index_t n = 0; n < N; ++n)
        for (index_t o = 0; o < l.out_features(); ++o) {
          double s = l.bias.value().flat(o);
          for (index_t i = 0; i < C; ++i) s += l.weight.value()(o, i) * x(b, n, i);
          y(b, n, o) = s;
        }
    return y;
  };
  const Tensor<double> q = proj(mha.q_proj), k = proj(mha.k_proj), v = proj(mha.v_proj);
  Tensor<double> o(Shape{B, N, C});
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t n = 0; n < N; ++n) {
        std::vector<double> a(static_cast<std::size_t>(N));
        double mx = -1e300, z = 0;
        for (index_t m = 0; m < N; ++m) {
          double s = 0;
          for (index_t j = 0; j < dq; ++j) s += q(b, n, h * dq + j) * k(b, m, h * dq + j);
          a[std::size_t(m)] = s / std::sqrt(double(dq));
          mx = std::max(mx, a[std::size_t(m)]);
        }
        for (double& e : a) z += (e = std::exp(e - mx));
        for (index_t j = 0; j < dv; ++j) {
          double s = 0;
          for (index_t m = 0; m < N; ++m) s += a[std::size_t(m)] / z * v(b, m, h * dv + j);
          o(b, n, h * dv + j) = s;
        }
      }
  Tensor<double> y(Shape{B, N, C});
  for (index_t b = 0; b < B; ++b)
    for (index_t n = 0; n < N; ++n)
      for (index_t c = 0; c < C; ++c) {
        double s = mha.out_proj.bias.value().flat(c);
        for (index_t i = 0; i < C; ++i) s += mha.out_proj.weight.value()(c, i) * o(b, n, i);
        y(b, n, c) = s;
      }
  return y;
}

}  // namespace

TEST_CASE_TEMPLATE("quant/qkr: unquantised QKR equals standard attention (exact bias policy)", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  for (index_t heads : {1, 2, 4}) {
    Rng rng(10 + std::uint64_t(heads));
    nn::MultiHeadAttention<T> mha(8, heads, rng);  // all four projections with bias
    quant::QkrOptions o;
    o.qk_bias = quant::QkBias::exact;
    quant::QkrAttention<T> qkr(mha, o);
    const Tensor<T> x = test::randn<T>(Shape{3, 5, 8}, rng);
    CHECK(max_diff(run(qkr, x, true), run(mha, x, false)) <= tol);
    // the logits, against the standard scores (q_n . k_m) / sqrt(d) per head
    Tape<T> t;
    no_grad ng;
    Var<T> xv = t.constant(x);
    const Tensor<T> q = mha.q_proj(xv).value(), k = mha.k_proj(xv).value(), l = qkr.logits(xv).value();
    const index_t d = 8 / heads;
    double worst = 0;
    for (index_t b = 0; b < 3; ++b)
      for (index_t h = 0; h < heads; ++h)
        for (index_t n = 0; n < 5; ++n)
          for (index_t m = 0; m < 5; ++m) {
            double s = 0;
            for (index_t j = 0; j < d; ++j) s += double(q(b, n, h * d + j)) * double(k(b, m, h * d + j));
            s /= std::sqrt(double(d));
            // exact policy: equal up to terms constant in m (x_n . W_q^T b_k and b_q . b_k)
            double c = 0;
            for (index_t j = 0; j < d; ++j) c += double(q(b, n, h * d + j)) * double(mha.k_proj.bias.value().flat(h * d + j));
            worst = std::max(worst, std::abs(double(l(b * heads + h, n, m)) - (s - c / std::sqrt(double(d)))));
          }
    CHECK(worst <= tol * 10);
  }
}

TEST_CASE("quant/qkr: the drop policy equals attention only when b_q = 0") {
  Rng rng(3);
  nn::MultiHeadAttention<double> mha(6, 2, rng);
  quant::QkrAttention<double> qkr(mha);  // drop, the reference's policy
  const Tensor<double> x = test::randn<double>(Shape{2, 4, 6}, rng);
  CHECK(max_diff(run(qkr, x, true), run(mha, x, false)) > 1e-6);  // b_q's key term is lost
  mha.q_proj.bias.value().set_zero();
  CHECK(max_diff(run(qkr, x, true), run(mha, x, false)) <= 1e-12);  // b_k's terms cancel in the softmax
  qkr.set_qk_bias(quant::QkBias::exact);
  CHECK(max_diff(run(qkr, x, true), run(mha, x, false)) <= 1e-12);
}

TEST_CASE("quant/qkr: gradient check of unquantised QKR (float64, every parameter)") {
  Rng rng(4);
  nn::MultiHeadAttention<double> mha(4, 2, rng);
  quant::QkrOptions o;
  o.qk_bias = quant::QkBias::exact;
  quant::QkrAttention<double> qkr(mha, o);
  const Tensor<double> x = test::randn<double>(Shape{2, 3, 4}, rng), R = test::randn<double>(Shape{2, 3, 4}, rng);
  WEFT_CHECK_GRAD(param_grad_check(qkr.parameters(), [&](Tape<double>& t) { return contract(qkr(t.constant(x)), R); }));
  // and with respect to the input
  auto f = [&](Tape<double>&, const std::vector<Var<double>>& v) { return qkr(v[0]); };
  WEFT_CHECK_GRAD(grad_check(f, {x}));
}

TEST_CASE("quant/qkr: quantised backward: dL/dW_q^h = W_k^h G^T, dL/dW_k^h = W_q^h G with the identity STE") {
  Rng rng(5);
  const index_t C = 6, H = 2, d = 3;
  nn::MultiHeadAttention<double> mha(C, H, rng, false);
  quant::QkrAttention<double> qkr(mha);
  const Tensor<double> x = test::randn<double>(Shape{2, 4, C}, rng), R = test::randn<double>(Shape{2, 4, C}, rng);
  const Tensor<double> m_fp = qkr.folded_product();
  auto sq = quant::statsq<2, double>();
  qkr.product_quantizer = sq;
  const Tensor<double> m_q = qkr.folded_product();
  CHECK(sq->scales().size() == std::size_t(H * C));  // one scale per (head, row)
  CHECK(max_diff(m_q, m_fp) > 1e-3);
  auto grads = [&](nn::WeightTransform<double>* capture) {
    mha.q_proj.weight.zero_grad();
    mha.k_proj.weight.zero_grad();
    Tape<double> t;
    t.backward(contract(qkr(t.constant(x)), R));
    Tensor<double> g;
    if (auto* s = dynamic_cast<ShiftTransform<double>*>(capture)) g = s->last.grad().clone();
    return std::vector<Tensor<double>>{mha.q_proj.weight.grad().clone(), mha.k_proj.weight.grad().clone(), g};
  };
  const auto with_statsq = grads(nullptr);
  // the same forward values through M + (M_hat - M) with an identity gradient: G = dL/dM_hat
  auto shift = std::make_shared<ShiftTransform<double>>();
  shift->d = Tensor<double>::from(m_q.matrix() - m_fp.matrix());
  qkr.product_quantizer = shift;
  const auto with_shift = grads(shift.get());
  WEFT_CHECK_CLOSE(with_statsq[0], with_shift[0], 1e-12);
  WEFT_CHECK_CLOSE(with_statsq[1], with_shift[1], 1e-12);
  const Tensor<double>& G = with_shift[2];  // (H C, C)
  const auto Wq = mha.q_proj.weight.value().matrix(), Wk = mha.k_proj.weight.value().matrix();
  for (index_t h = 0; h < H; ++h) {
    const RowMatrix<double> Gh = G.matrix().block(h * C, 0, C, C);
    const RowMatrix<double> dq = Wk.block(h * d, 0, d, C) * Gh.transpose(), dk = Wq.block(h * d, 0, d, C) * Gh;
    WEFT_CHECK_CLOSE(Tensor<double>::from(with_statsq[0].matrix().block(h * d, 0, d, C)), Tensor<double>::from(dq), 1e-12);
    WEFT_CHECK_CLOSE(Tensor<double>::from(with_statsq[1].matrix().block(h * d, 0, d, C)), Tensor<double>::from(dk), 1e-12);
  }
  // the gate (the StatsQ product quantiser's own): only entries near a threshold pass dL/dM
  qkr.product_quantizer = sq;
  sq->set_ste_gate(0.05);
  const auto gated = grads(nullptr);
  CHECK(max_diff(gated[0], with_statsq[0]) > 1e-9);
  sq->set_ste_gate(0);
  CHECK(test::identical(grads(nullptr)[0], with_statsq[0]));
}

TEST_CASE("quant/qkr: input and intermediate quantisers; the block wrapper; parameters") {
  Rng rng(6);
  nn::MultiHeadAttention<double> mha(8, 2, rng);
  quant::QkrOptions o;
  o.qk_bias = quant::QkBias::exact;
  quant::QkrAttention<double> qkr(mha, o);
  const Tensor<double> x = test::randn<double>(Shape{2, 3, 8}, rng);
  // the input quantiser feeds q, k and v: x -> 2x equals attention on 2x
  auto in = std::make_shared<ScaleInput<double>>(2.0);
  qkr.input_quantizer = in;
  Tensor<double> x2 = x.clone();
  x2.array() *= 2.0;
  CHECK(max_diff(run(qkr, x, true), run(mha, x2, false)) <= 1e-12);
  qkr.input_quantizer = nullptr;
  // the intermediate quantiser sees K' = X M^T of shape (B, N, H C)
  auto mid = std::make_shared<ScaleInput<double>>(1.0);
  qkr.intermediate_quantizer = mid;
  CHECK(max_diff(run(qkr, x, true), run(mha, x, false)) <= 1e-12);
  CHECK(mid->seen == Shape{2, 3, 16});
  qkr.intermediate_quantizer = nullptr;
  // the block: h = x + qkr(ln1 x), y = h + mlp(ln2 h) equals the TransformerBlock
  nn::TransformerBlock<double> block(8, 2, 2, rng);
  quant::QkrTransformerBlock<double> qb(block, o);
  Tape<double> t;
  no_grad ng;
  const Tensor<double> y_qkr = qb(t.constant(x)).value();  // a handle: later records may move the nodes
  const Tensor<double> y_ref = block(t.constant(x)).value();
  CHECK(max_diff(y_qkr, y_ref) <= 1e-12);
  // parameters: the attention's and those of the quantisers
  qkr.product_quantizer = quant::statsq<2, double>();
  CHECK(qkr.named_parameters().size() == 8);
  CHECK(qb.named_parameters().size() == block.named_parameters().size());
}

TEST_CASE("quant/qkr: q/k projections of width d_qk != C: shapes, a plain reference, V keeps C") {
  for (index_t dqk : {4, 6, 12}) {
    Rng rng(20 + std::uint64_t(dqk));
    nn::MultiHeadAttention<double> mha(8, 2, rng);
    set_qk_width(mha, dqk, rng);
    quant::QkrOptions o;
    o.qk_bias = quant::QkBias::exact;
    quant::QkrAttention<double> qkr(mha, o);
    CHECK(qkr.qk_dim() == dqk);
    const Tensor<double> x = test::randn<double>(Shape{3, 5, 8}, rng);
    const Tensor<double> y = run(qkr, x, true);
    CHECK(y.shape() == Shape{3, 5, 8});
    CHECK(max_diff(y, attention_reference(mha, x)) <= 1e-12);
    CHECK(qkr.folded_product().shape() == Shape{16, 8});  // H C x C whatever d_qk
    Tape<double> t;
    no_grad ng;
    CHECK(qkr.logits(t.constant(x)).shape() == Shape{6, 5, 5});
    // with a product quantiser: still one scale per (head, row)
    auto sq = quant::statsq<2, double>();
    qkr.product_quantizer = sq;
    CHECK(run(qkr, x, true).shape() == Shape{3, 5, 8});
    CHECK(sq->scales().size() == 16);
  }
}

TEST_CASE("quant/qkr: gradient check with d_qk != C (float64, every parameter and the input)") {
  Rng rng(21);
  nn::MultiHeadAttention<double> mha(4, 2, rng);
  set_qk_width(mha, 6, rng);
  quant::QkrOptions o;
  o.qk_bias = quant::QkBias::exact;
  quant::QkrAttention<double> qkr(mha, o);
  const Tensor<double> x = test::randn<double>(Shape{2, 3, 4}, rng), R = test::randn<double>(Shape{2, 3, 4}, rng);
  WEFT_CHECK_GRAD(param_grad_check(qkr.parameters(), [&](Tape<double>& t) { return contract(qkr(t.constant(x)), R); }));
  auto f = [&](Tape<double>&, const std::vector<Var<double>>& v) { return qkr(v[0]); };
  WEFT_CHECK_GRAD(grad_check(f, {x}));
}

TEST_CASE("quant/qkr: bad input") {
  nn::MultiHeadAttention<float> empty;
  WEFT_QUANT_CHECK_FAILS(quant::QkrAttention<float>{empty}, ConfigError, "quant::QkrAttention");
  Rng rng(1);
  nn::MultiHeadAttention<float> mha(8, 2, rng);
  quant::QkrAttention<float> qkr(mha);
  Tape<float> t;
  WEFT_QUANT_CHECK_FAILS(qkr(t.constant(Tensor<float>(Shape{2, 3, 6}))), ShapeError, "quant::QkrAttention::forward");
  WEFT_QUANT_CHECK_FAILS(qkr(t.constant(Tensor<float>(Shape{3, 8}))), ShapeError, "quant::QkrAttention::forward");
  // q/k widths: divisible by the heads, one width for both, reading the model width
  nn::MultiHeadAttention<float> odd(8, 2, rng);
  set_qk_width(odd, 5, rng);
  CHECK_THROWS_WITH_AS(quant::QkrAttention<float>{odd}, doctest::Contains("d_qk divisible by heads = 2, got d_qk = 5"),
                       ShapeError);
  odd.k_proj = nn::Linear<float>(8, 6, rng);
  odd.q_proj = nn::Linear<float>(8, 4, rng);
  WEFT_QUANT_CHECK_FAILS(quant::QkrAttention<float>{odd}, ShapeError, "quant::QkrAttention");
  odd.q_proj = nn::Linear<float>(7, 6, rng);
  WEFT_QUANT_CHECK_FAILS(quant::QkrAttention<float>{odd}, ShapeError, "quant::QkrAttention");
  // swapped after construction: caught by the forward, before the input quantiser runs
  set_qk_width(mha, 3, rng);
  auto in = std::make_shared<ScaleInput<float>>(1.0f);
  qkr.input_quantizer = in;
  WEFT_QUANT_CHECK_FAILS(qkr(t.constant(Tensor<float>(Shape{2, 3, 8}))), ShapeError, "quant::QkrAttention::forward");
  CHECK(in->seen == Shape{});
  WEFT_QUANT_CHECK_FAILS(qkr.folded_product(), ShapeError, "quant::QkrAttention::product");
}

}  // namespace weft_unit_quant_qkr_test
