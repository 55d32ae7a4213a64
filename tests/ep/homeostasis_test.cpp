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

TEST_CASE("ep/homeostasis: the expected gradient is the mean of the draws within statistical error") {
  Rng net_rng(12);
  ep::NetOptions no;
  no.alpha_deg = 90;
  const auto net = ep::make_dense_net<double>({3, 4, 3, 2}, net_rng, no);
  const auto ex = ep::homeostasis_expected_gradient(net);
  CHECK(ex.loss == doctest::Approx(ep::homeostasis_expectation(net)).epsilon(1e-15));
  // G groups of D draws: the group means are i.i.d., so their mean has standard error sd / sqrt(G)
  const index_t G = 400, D = 100, K = net.layers();
  std::vector<std::vector<double>> groups;  // per group: every gradient entry, flattened
  Rng rng(13);
  for (index_t k = 0; k < G; ++k) {
    ep::State<double> eps = ep::zero_state<double>(net, D);
    for (auto& t : eps.layers)
      for (auto& x : t) x = rng.normal();
    const auto g = ep::homeostasis_gradient(net, eps);
    std::vector<double> flat;
    for (index_t l = 2; l <= K; ++l)
      for (const auto* t : {&g.W[std::size_t(l - 2)], &g.B[std::size_t(l - 2)]})
        for (index_t i = 0; i < t->numel(); ++i) flat.push_back(t->flat(i));
    groups.push_back(flat);
  }
  std::vector<double> expect;
  for (index_t l = 2; l <= K; ++l)
    for (const auto* t : {&ex.W[std::size_t(l - 2)], &ex.B[std::size_t(l - 2)]})
      for (index_t i = 0; i < t->numel(); ++i) expect.push_back(t->flat(i));
  double max_z = 0, mean_z2 = 0;
  for (std::size_t i = 0; i < expect.size(); ++i) {
    double m = 0, v = 0;
    for (const auto& gr : groups) m += gr[i] / double(G);
    for (const auto& gr : groups) v += (gr[i] - m) * (gr[i] - m) / double(G - 1);
    const double z = (m - expect[i]) / std::sqrt(v / double(G));
    max_z = std::max(max_z, std::abs(z));
    mean_z2 += z * z / double(expect.size());
  }
  INFO("max |z| ", max_z, ", mean z^2 ", mean_z2, " over ", expect.size(), " entries");
  CHECK(max_z <= 4.5);        // no entry off by more than 4.5 standard errors
  CHECK(mean_z2 >= 0.4);      // and the deviations are of the size of the standard error:
  CHECK(mean_z2 <= 1.8);      // (chi-square / dof of 36 entries)
}

TEST_CASE("ep/homeostasis: the expected gradient is the gradient of sum |B_l - W_l^T|^2 / n (FD)") {
  Setup<double> s(90, 45, {5, 6, 4, 3});
  const auto ex = ep::homeostasis_expected_gradient(s.net);
  const index_t K = s.net.layers();
  for (index_t l = 2; l <= K; ++l)
    for (auto* p : {&s.net.W[std::size_t(l - 1)], &s.net.B[std::size_t(l - 2)]}) {
      const bool is_w = p == &s.net.W[std::size_t(l - 1)];
      const Tensor<double>& g = is_w ? ex.W[std::size_t(l - 2)] : ex.B[std::size_t(l - 2)];
      for (index_t i = 0; i < p->numel(); ++i) {
        double& w = p->value().flat(i);
        const double w0 = w, h = 1e-4;
        w = w0 + h;
        const double lp = ep::homeostasis_expectation(s.net);
        w = w0 - h;
        const double lm = ep::homeostasis_expectation(s.net);
        w = w0;
        CHECK(std::abs((lp - lm) / (2 * h) - g.flat(i)) <= 1e-10);  // a quadratic: exact up to rounding
      }
    }
  // zero at symmetry; added with lambda to W_l, B_l (l >= 2) only
  Setup<double> sym(0, 46);
  for (const auto& t : ep::homeostasis_expected_gradient(sym.net).B) CHECK(t.matrix().norm() <= 1e-15);
  for (auto& p : s.net.parameters()) p.grad().fill(0.5);
  CHECK(ep::add_expected_homeostasis_gradient(s.net, 3.0) == doctest::Approx(ex.loss).epsilon(1e-15));
  for (index_t l = 2; l <= K; ++l) {
    Tensor<double> ew = ex.W[std::size_t(l - 2)].clone();
    ew.array() = ew.array() * 3.0 + 0.5;
    CHECK(test::compare(s.net.W[std::size_t(l - 1)].grad(), ew, 1e-15).ok);
  }
  CHECK((s.net.W[0].grad().array() == 0.5).all());
  CHECK((s.net.V.grad().array() == 0.5).all());
  CHECK_THROWS_AS(ep::add_expected_homeostasis_gradient(s.net, -1.0), ValueError);
}

TEST_CASE("ep/homeostasis: train_step with homeo_expected adds lambda times the exact expectation") {
  Setup<double> s(90, 47);
  ep::TrainOptions o;
  o.free_phase.gamma = 0.5;
  o.free_phase.max_iters = 60;
  o.hep.relax.gamma = 0.5;
  o.homeo_lambda = 2.0;
  o.homeo_expected = true;
  nn::SGDOptions so;
  so.lr = 0;
  nn::SGD<double> opt(s.net.parameters(), so);
  Rng rng(14);
  const ep::StepStats st = ep::train_step(s.net, opt, s.batch.X, s.batch.y, o, rng);
  CHECK(st.homeo_loss == doctest::Approx(ep::homeostasis_expectation(s.net)).epsilon(1e-15));
  ep::State<double> u0;
  ep::free_phase(s.net, s.batch.X, u0, o.free_phase);
  auto g = ep::error_gradients(s.net, s.batch.X, s.batch.y, u0, ep::hep_error(s.net, s.batch.X, s.batch.y, u0, o.hep).e);
  const auto h = ep::homeostasis_expected_gradient(s.net);
  const index_t K = s.net.layers();
  for (index_t l = 2; l <= K; ++l) {
    g[std::size_t(l - 1)].array() += 2.0 * h.W[std::size_t(l - 2)].array();
    g[std::size_t(2 * K + l - 2)].array() += 2.0 * h.B[std::size_t(l - 2)].array();
  }
  const auto params = s.net.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) CHECK(test::compare(params[i].grad(), g[i], 1e-12).ok);
}

}  // namespace weft_unit_ep_homeostasis_test
