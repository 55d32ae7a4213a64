// Tests of weft/ep/homeostasis.hpp - spec V3: for fixed draws the explicit loss and gradient equal
// the autograd of the definition (dense J built from the blocks, v = J eps, w = J v), which is
// itself checked by finite differences; with 20,000 draws the estimate matches its expectation;
// the gradient is added with lambda, NaN-free, to W_l and B_l (l >= 2) only.
#include "ep/ep_test_util.hpp"

#include "weft/core/autograd.hpp"

namespace weft_unit_ep_homeostasis_test {

using namespace weft;
using ep_test::Setup;

namespace {

/// l_h = mean over rows of (|J eps|^2 - <eps, J J eps>) / n, J assembled from blocks of vars
/// (vars = W_2..W_K, then B_2..B_K), eps a constant (D x n).
template <class Tape, class VarList>
auto homeo_autograd(Tape& tape, const VarList& v, const std::vector<index_t>& s, const Tensor<double>& eps_d) {
  using T = typename std::decay_t<decltype(v[0].value())>::value_type;
  const index_t K = index_t(s.size()) - 1, n = eps_d.dim(1), D = eps_d.dim(0);
  std::vector<std::decay_t<decltype(v[0])>> rows;
  for (index_t l = 1; l <= K; ++l) {
    std::vector<std::decay_t<decltype(v[0])>> blocks;
    for (index_t m = 1; m <= K; ++m) {
      if (m == l - 1) blocks.push_back(v[std::size_t(l - 2)]);             // W_l
      else if (m == l + 1) blocks.push_back(v[std::size_t(K - 1 + l - 1)]);  // B_{l+1}
      else {
        Tensor<T> c(Shape{s[std::size_t(l)], s[std::size_t(m)]});
        if (m == l)
          for (index_t i = 0; i < s[std::size_t(l)]; ++i) c(i, i) = T(-1);
        blocks.push_back(tape.constant(c));
      }
    }
    rows.push_back(concat(blocks, 1));
  }
  auto J = concat(rows, 0);
  auto E = tape.constant(eps_d.template cast<T>());
  auto Vt = matmul_nt(E, J);   // rows (J eps)^T
  auto Wt = matmul_nt(Vt, J);  // rows (J J eps)^T
  return (sum(Vt * Vt) - sum(E * Wt)) * T(1.0 / double(n * D));
}

}  // namespace

TEST_CASE("ep/homeostasis: V3 explicit loss and gradient equal the autograd of the definition") {
  Setup<double> s(90, 41);
  const index_t D = 6, n = s.net.neurons(), K = s.net.layers();
  Rng rng(7);
  ep::State<double> eps = ep::zero_state<double>(s.net, D);
  Tensor<double> eps_d(Shape{D, n});
  for (index_t l = 1; l <= K; ++l)
    for (index_t r = 0; r < D; ++r)
      for (index_t i = 0; i < s.net.size(l); ++i) eps_d(r, s.net.offset(l) + i) = eps.layers[std::size_t(l - 1)](r, i) = rng.normal();
  const auto g = ep::homeostasis_gradient(s.net, eps);
  Tape<double> tape;
  std::vector<Var<double>> vars;
  for (index_t l = 2; l <= K; ++l) vars.push_back(tape.variable(s.net.W[std::size_t(l - 1)].value()));
  for (index_t l = 2; l <= K; ++l) vars.push_back(tape.variable(s.net.B[std::size_t(l - 2)].value()));
  Var<double> loss = homeo_autograd(tape, vars, s.net.sizes, eps_d);
  CHECK(std::abs(loss.value().item() - g.loss) <= 1e-12 * std::max(1.0, std::abs(g.loss)));
  tape.backward(loss);
  for (index_t l = 2; l <= K; ++l) {
    CHECK(test::compare(vars[std::size_t(l - 2)].grad(), g.W[std::size_t(l - 2)], 1e-12).ok);
    CHECK(test::compare(vars[std::size_t(K - 1 + l - 2)].grad(), g.B[std::size_t(l - 2)], 1e-12).ok);
  }
}

TEST_CASE("ep/homeostasis: the autograd definition passes grad_check (finite differences)") {
  Rng rng(8);
  ep::NetOptions o;
  o.alpha_deg = 90;
  auto net = ep::make_dense_net<double>({3, 4, 3, 2}, rng, o);
  const index_t D = 3, n = net.neurons();
  Tensor<double> eps_d(Shape{D, n});
  for (auto& x : eps_d) x = rng.normal();
  auto f = [&](auto& tape, const auto& v) { return homeo_autograd(tape, v, net.sizes, eps_d); };
  std::vector<Tensor<double>> in = {net.W[1].value(), net.W[2].value(), net.B[0].value(), net.B[1].value()};
  const GradCheckResult r = grad_check(f, in);
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("ep/homeostasis: V3 with 20,000 draws the estimate matches its expectation") {
  Setup<double> s(90, 42);
  const index_t D = 20000, K = s.net.layers();
  Rng rng(9);
  ep::State<double> eps = ep::zero_state<double>(s.net, D);
  for (auto& t : eps.layers)
    for (auto& x : t) x = rng.normal();
  const auto g = ep::homeostasis_gradient(s.net, eps);
  const double expect = ep::homeostasis_expectation(s.net);
  INFO("estimate ", g.loss, " expectation ", expect);
  CHECK(std::abs(g.loss - expect) / expect <= 0.02);
  const double n = double(s.net.neurons());
  double num = 0, den = 0;
  for (index_t l = 2; l <= K; ++l) {
    const RowMatrix<double> Wm = s.net.W[std::size_t(l - 1)].value().matrix();
    const RowMatrix<double> Bm = s.net.B[std::size_t(l - 2)].value().matrix();
    const RowMatrix<double> ew = 2 * (Wm - Bm.transpose()) / n, eb = 2 * (Bm - Wm.transpose()) / n;
    const double rw = (g.W[std::size_t(l - 2)].matrix() - ew).norm() / ew.norm();
    const double rb = (g.B[std::size_t(l - 2)].matrix() - eb).norm() / eb.norm();
    INFO("layer ", l, ": rel err W ", rw, ", B ", rb);
    CHECK(rw <= 0.08);
    CHECK(rb <= 0.08);
    num += (g.W[std::size_t(l - 2)].matrix() - ew).squaredNorm() + (g.B[std::size_t(l - 2)].matrix() - eb).squaredNorm();
    den += ew.squaredNorm() + eb.squaredNorm();
  }
  CHECK(std::sqrt(num / den) <= 0.08);
}

TEST_CASE("ep/homeostasis: the gradient is added with lambda to W_l and B_l (l >= 2) only") {
  Setup<double> s(90, 43);
  auto params = s.net.parameters();
  for (auto& p : params) p.grad().fill(0.25);
  Rng a(10), b(10);
  const double l1 = ep::add_homeostasis_gradient(s.net, 40, 3.0, a);
  // the same draws, by hand
  ep::State<double> eps = ep::zero_state<double>(s.net, 40);
  for (auto& t : eps.layers)
    for (auto& x : t) x = b.normal();
  const auto g = ep::homeostasis_gradient(s.net, eps);
  CHECK(l1 == doctest::Approx(g.loss).epsilon(1e-14));
  for (index_t l = 2; l <= s.net.layers(); ++l) {
    Tensor<double> ew = g.W[std::size_t(l - 2)].clone();
    ew.array() = ew.array() * 3.0 + 0.25;
    CHECK(test::compare(s.net.W[std::size_t(l - 1)].grad(), ew, 1e-14).ok);
    Tensor<double> eb = g.B[std::size_t(l - 2)].clone();
    eb.array() = eb.array() * 3.0 + 0.25;
    CHECK(test::compare(s.net.B[std::size_t(l - 2)].grad(), eb, 1e-14).ok);
  }
  for (auto* p : {&s.net.W[0], &s.net.b[0], &s.net.b[2], &s.net.V, &s.net.c})
    CHECK((p->grad().array() == 0.25).all());
  // symmetric weights: every draw's loss is 0 (J^T J = J^2), and its gradient w.r.t. J is the
  // antisymmetric v eps^T - eps v^T, so dl/dB_l = -(dl/dW_l)^T (zero only in expectation)
  Setup<double> sym(0, 44);
  Rng c(11);
  for (auto& p : sym.net.parameters()) p.zero_grad();
  CHECK(std::abs(ep::add_homeostasis_gradient(sym.net, 10, 1.0, c)) <= 1e-12);
  for (index_t l = 2; l <= sym.net.layers(); ++l) {
    const auto gw = sym.net.W[std::size_t(l - 1)].grad().matrix();
    const auto gb = sym.net.B[std::size_t(l - 2)].grad().matrix();
    CHECK(gw.norm() > 0.0);
    CHECK((gb + gw.transpose()).norm() <= 1e-12 * gw.norm());
  }
  // bad input
  CHECK_THROWS_AS(ep::add_homeostasis_gradient(s.net, 0, 1.0, c), ValueError);
  CHECK_THROWS_AS(ep::add_homeostasis_gradient(s.net, 5, -1.0, c), ValueError);
  CHECK_THROWS_AS(ep::add_homeostasis_gradient(s.net, 5, std::nan(""), c), ValueError);
  ep::State<double> wrong = ep::zero_state<double>(s.net, 4);
  wrong.layers.pop_back();
  CHECK_THROWS_AS(ep::homeostasis_gradient(s.net, wrong), ShapeError);
}

}  // namespace weft_unit_ep_homeostasis_test
