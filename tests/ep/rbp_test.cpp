// Tests of weft/ep/rbp.hpp and gradients.hpp - spec V0: the RBP gradient equals finite differences
// of the loss at the fixed point (alpha 0 and 90), the iterative VJP loop equals the dense solve,
// the dense Jacobian equals finite differences of F, the weight-gradient VJP equals finite
// differences of <xi, F>, and e = J_r^-1 J_r^T delta.
#include "ep/ep_test_util.hpp"

namespace weft_unit_ep_rbp_test {

using namespace weft;
using ep_test::Setup;

namespace {

/// Mean loss at the fixed point reached from u0 (gamma 1, tol 1e-15), for the current weights.
double loss_at_fixed_point(const ep::DenseNet<double>& net, const Setup<double>& s) {
  ep::RelaxOptions o;
  o.tol = 1e-15;
  o.max_iters = 3000;
  ep::State<double> u = s.u0.clone();
  ep::relax(net, s.batch.X, std::vector<int>{}, 0.0, u, o);
  return ep::readout(net, u, s.batch.y).loss;
}

/// F(u; theta) at beta = 0 from its definition, per sample, stacked (batch x n).
RowMatrix<double> vector_field(const ep::DenseNet<double>& net, const Tensor<double>& X, const ep::State<double>& u) {
  const index_t B = X.dim(0), K = net.layers();
  RowMatrix<double> F(B, net.neurons());
  std::vector<RowMatrix<double>> r(std::size_t(K + 1));
  r[0] = X.matrix();
  for (index_t l = 1; l <= K; ++l)
    r[std::size_t(l)] = u.layers[std::size_t(l - 1)].matrix().unaryExpr([&](double v) { return ep::phi(net.activation, v); });
  for (index_t l = 1; l <= K; ++l) {
    RowMatrix<double> h = r[std::size_t(l - 1)] * net.W[std::size_t(l - 1)].value().matrix().transpose();
    h.rowwise() += net.b[std::size_t(l - 1)].value().vector().transpose();
    if (l < K) h += r[std::size_t(l + 1)] * net.B[std::size_t(l - 1)].value().matrix().transpose();
    F.block(0, net.offset(l), B, net.size(l)) = h - u.layers[std::size_t(l - 1)].matrix();
  }
  return F;
}

}  // namespace

TEST_CASE("ep/rbp: V0 the RBP gradient equals finite differences of the loss at the fixed point") {
  for (double alpha : {0.0, 90.0}) {
    Setup<double> s(alpha, 21);
    REQUIRE(s.free.converged == 8);
    ep::RbpOptions ro;
    ro.max_iters = 3000;
    ro.tol = 1e-15;
    const auto rbp = ep::rbp_error(s.net, s.batch.X, s.batch.y, s.u0, ro);
    CHECK(rbp.diverged == 0);
    const auto g = ep::error_gradients(s.net, s.batch.X, s.batch.y, s.u0, rbp.delta);
    // W_1, W_2, B_2, b_2, V, c: parameters() indices 0, 1, 6, 4, 8, 9
    Rng pick(5);
    auto params = s.net.parameters();
    for (std::size_t pi : {std::size_t(0), std::size_t(1), std::size_t(6), std::size_t(4), std::size_t(8),
                           std::size_t(9)}) {
      for (int k = 0; k < 6; ++k) {
        const index_t i = index_t(pick.below(std::uint64_t(params[pi].numel())));
        double& w = params[pi].value().flat(i);
        const double w0 = w, h = 1e-5;
        w = w0 + h;
        const double lp = loss_at_fixed_point(s.net, s);
        w = w0 - h;
        const double lm = loss_at_fixed_point(s.net, s);
        w = w0;
        const double fd = (lp - lm) / (2 * h), gd = g[pi].flat(i);
        INFO("alpha ", alpha, " ", params[pi].name(), "[", i, "]: fd ", fd, " rbp ", gd);
        CHECK(std::abs(fd - gd) <= 1e-4 * std::max(std::abs(gd), 1e-6) + 1e-9);
      }
    }
  }
}

TEST_CASE("ep/rbp: the iterative VJP loop equals the dense solve") {
  for (double alpha : {0.0, 90.0}) {
    Setup<double> s(alpha, 22);
    ep::RbpOptions it;
    it.max_iters = 3000;
    it.tol = 1e-15;
    const auto a = ep::rbp_error(s.net, s.batch.X, s.batch.y, s.u0, it);
    ep::RbpOptions de;
    de.method = ep::RbpMethod::dense;
    const auto b = ep::rbp_error(s.net, s.batch.X, s.batch.y, s.u0, de);
    CHECK(ep::relative_error(a.delta, b.delta) <= 1e-12);
    CHECK(a.max_residual <= 1e-15);
    CHECK(a.iterations < 3000);
    // a fixed count of 20 (the paper's T2) is a truncated, not an exact, solve
    ep::RbpOptions t2;
    const auto c = ep::rbp_error(s.net, s.batch.X, s.batch.y, s.u0, t2);
    CHECK(c.iterations == 20);
    CHECK(ep::relative_error(c.delta, b.delta) > 1e-12);
  }
}

TEST_CASE("ep/rbp: the dense Jacobian J_u equals finite differences of F") {
  Setup<double> s(90, 23, {6, 5, 4, 3}, 2);
  const index_t n = s.net.neurons();
  for (index_t b = 0; b < 2; ++b) {
    const RowMatrix<double> J = ep::jacobian_u(s.net, s.u0, b);
    for (index_t j = 0; j < n; ++j) {
      ep::State<double> up = s.u0.clone(), um = s.u0.clone();
      index_t l = 1;
      while (j >= s.net.offset(l) + s.net.size(l)) ++l;
      up.layers[std::size_t(l - 1)](b, j - s.net.offset(l)) += 1e-6;
      um.layers[std::size_t(l - 1)](b, j - s.net.offset(l)) -= 1e-6;
      const RowMatrix<double> col = (vector_field(s.net, s.batch.X, up) - vector_field(s.net, s.batch.X, um)) / 2e-6;
      for (index_t i = 0; i < n; ++i) CHECK(std::abs(J(i, j) - col(b, i)) <= 1e-8);
    }
  }
}

TEST_CASE("ep/gradients: error_gradients is the VJP of F at the free state (finite differences)") {
  // Phi(theta) = mean_b <xi_b, F(u0_b; theta)> + mean loss(readout of r0): grad Phi = g(xi)
  Setup<double> s(90, 24, {5, 4, 3, 3}, 3);
  Rng rng(6);
  ep::State<double> xi = ep::zero_state<double>(s.net, 3);
  for (auto& t : xi.layers)
    for (auto& v : t) v = rng.normal();
  const auto g = ep::error_gradients(s.net, s.batch.X, s.batch.y, s.u0, xi);
  auto phi_of = [&] {
    const RowMatrix<double> F = vector_field(s.net, s.batch.X, s.u0);
    double acc = 0;
    for (index_t l = 1; l <= s.net.layers(); ++l)
      acc += (F.block(0, s.net.offset(l), 3, s.net.size(l)).array() * xi.layers[std::size_t(l - 1)].matrix().array()).sum();
    return acc / 3 + ep::readout(s.net, s.u0, s.batch.y).loss;
  };
  auto params = s.net.parameters();
  REQUIRE(params.size() == g.size());
  for (std::size_t p = 0; p < params.size(); ++p)
    for (index_t i = 0; i < params[p].numel(); ++i) {
      double& w = params[p].value().flat(i);
      const double w0 = w;
      w = w0 + 1e-6;
      const double fp = phi_of();
      w = w0 - 1e-6;
      const double fm = phi_of();
      w = w0;
      CHECK(std::abs((fp - fm) / 2e-6 - g[p].flat(i)) <= 1e-7);
    }
}

TEST_CASE("ep/rbp: V2 e = J_r^-1 J_r^T delta, and e = delta for symmetric weights") {
  for (double alpha : {0.0, 90.0}) {
    Setup<double> s(alpha, 25);
    const auto ex = ep::exact_errors(s.net, s.batch.X, s.batch.y, s.u0);
    const index_t n = s.net.neurons();
    double worst = 0;
    for (index_t b = 0; b < 8; ++b) {
      const RowMatrix<double> Ju = ep::jacobian_u(s.net, s.u0, b);
      Eigen::VectorXd d(n), delta(n), e(n);
      for (index_t l = 1; l <= s.net.layers(); ++l)
        for (index_t i = 0; i < s.net.size(l); ++i) {
          d(s.net.offset(l) + i) = ep::phi_derivative(s.net.activation, s.u0.layers[std::size_t(l - 1)](b, i));
          delta(s.net.offset(l) + i) = ex.delta.layers[std::size_t(l - 1)](b, i);
          e(s.net.offset(l) + i) = ex.e.layers[std::size_t(l - 1)](b, i);
        }
      const Eigen::MatrixXd Jr = Ju * d.cwiseInverse().asDiagonal();  // J_r = J_u D^-1
      const Eigen::VectorXd pred = Jr.partialPivLu().solve(Jr.transpose() * delta);
      worst = std::max(worst, (pred - e).norm() / e.norm());
    }
    CHECK(worst <= 1e-10);
    if (alpha == 0) CHECK(ep::relative_error(ex.e, ex.delta) <= 1e-12);
    else CHECK(ep::relative_error(ex.e, ex.delta) > 0.1);  // asymmetry bias
  }
}

TEST_CASE("ep/rbp: bad input") {
  Setup<double> s(90, 26);
  ep::RbpOptions o;
  o.max_iters = -1;
  CHECK_THROWS_AS(ep::rbp_error(s.net, s.batch.X, s.batch.y, s.u0, o), ValueError);
  o = {};
  o.gamma = 0;
  CHECK_THROWS_AS(ep::rbp_error(s.net, s.batch.X, s.batch.y, s.u0, o), ValueError);
  o = {};
  ep::State<double> bad = s.u0.clone();
  bad.layers[0] = Tensor<double>(Shape{7, 24});
  CHECK_THROWS_AS(ep::rbp_error(s.net, s.batch.X, s.batch.y, bad, o), ShapeError);
  CHECK_THROWS_AS(ep::exact_errors(s.net, s.batch.X, s.batch.y, bad), ShapeError);
  CHECK_THROWS_AS(ep::jacobian_u(s.net, s.u0, 8), ShapeError);
  ep::State<double> xi = ep::zero_state<double>(s.net, 7);
  CHECK_THROWS_AS(ep::error_gradients(s.net, s.batch.X, s.batch.y, s.u0, xi), ShapeError);
  CHECK_THROWS_AS(ep::readout(s.net, s.u0, std::vector<int>(8, 10)), ValueError);
  std::vector<Tensor<double>> a(1, Tensor<double>(Shape{2})), b(1, Tensor<double>(Shape{3}));
  CHECK_THROWS_AS(ep::gradient_cosine(a, b), ShapeError);
}

}  // namespace weft_unit_ep_rbp_test
