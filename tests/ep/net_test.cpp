// Tests of weft/ep/net.hpp and weft/ep/metrics.hpp: shapes, names and init of the dense
// network, the mixing angle, the symmetry and angle metrics against dense definitions, and bad
// configurations.
#include "ep/ep_test_util.hpp"

namespace weft_unit_ep_net_test {

using namespace weft;

TEST_CASE("ep/net: shapes, parameter order and names") {
  Rng rng(1);
  auto net = ep::make_dense_net<double>({16, 24, 20, 10}, rng);
  CHECK(net.layers() == 3);
  CHECK(net.neurons() == 54);
  CHECK(net.offset(1) == 0);
  CHECK(net.offset(3) == 44);
  CHECK(net.classes() == 10);
  const auto p = net.parameters();
  REQUIRE(p.size() == 3 + 3 + 2 + 2);
  CHECK(net.dynamics_parameters() == 8);
  CHECK(p[0].name() == "W1");
  CHECK(p[0].shape() == Shape({24, 16}));
  CHECK(p[2].shape() == Shape({10, 20}));
  CHECK(p[3].name() == "b1");
  CHECK(p[6].name() == "B2");
  CHECK(p[6].shape() == Shape({24, 20}));
  CHECK(p[7].shape() == Shape({20, 10}));
  CHECK(p[8].name() == "V");
  CHECK(p[8].shape() == Shape({10, 10}));
  CHECK(p[9].value().array().abs().maxCoeff() == 0.0);  // c = 0
  CHECK(net.b[1].value().array().abs().maxCoeff() == 0.0);
  ep::NetOptions mo;
  mo.readout = ep::Readout::mse;
  mo.num_classes = 10;
  auto m = ep::make_dense_net<float>({8, 12, 10}, rng, mo);
  CHECK(m.parameters().size() == 5);
  CHECK(m.classes() == 10);
  CHECK_FALSE(m.V.defined());
}

TEST_CASE("ep/net: LeCun truncated normal init") {
  Rng rng(2);
  Tensor<double> w(Shape{400, 250});
  ep::lecun_truncated_normal(w, 250, rng);
  const double scale = 1.0 / (0.87962566103423978 * std::sqrt(250.0));
  CHECK(w.array().abs().maxCoeff() <= 2 * scale);
  const double var = w.array().square().mean();
  CHECK(var == doctest::Approx(1.0 / 250).epsilon(0.02));  // unit variance after truncation
  CHECK_THROWS_AS(ep::lecun_truncated_normal(w, 0, rng), ValueError);
}

TEST_CASE("ep/net: the mixing angle and the symmetry metrics") {
  for (double alpha : {0.0, 30.0, 90.0}) {
    Rng rng(3);
    ep::NetOptions o;
    o.alpha_deg = alpha;
    auto net = ep::make_dense_net<double>({10, 20, 15, 10}, rng, o);
    if (alpha == 0) {
      for (index_t l = 2; l <= 3; ++l)
        CHECK(net.B[std::size_t(l - 2)].value().matrix() == net.W[std::size_t(l - 1)].value().matrix().transpose());
      CHECK(ep::weight_angle_deg(net) < 1e-10);  // arccos of the cosine gave up to 1e-6 here
      CHECK(ep::jacobian_symmetry(net) == 1.0);
      CHECK(ep::homeostasis_expectation(net) == 0.0);
    }
    // s / (s + a) against its dense definition
    const RowMatrix<double> J = ep::jacobian_vf(net);
    const double s = (0.5 * (J + J.transpose())).norm(), a = (0.5 * (J - J.transpose())).norm();
    CHECK(ep::jacobian_symmetry(net) == doctest::Approx(s / (s + a)).epsilon(1e-12));
    // L_homeo = |J - J^T|^2 / 2 / n
    CHECK(ep::homeostasis_expectation(net) ==
          doctest::Approx((J - J.transpose()).squaredNorm() / 2 / double(net.neurons())).epsilon(1e-12));
  }
  Rng rng(4);
  ep::NetOptions o;
  o.alpha_deg = 90;
  auto net = ep::make_dense_net<double>({10, 200, 200, 10}, rng, o);
  CHECK(ep::weight_angle_deg(net) == doctest::Approx(90).epsilon(0.05));  // independent draws
  auto one = ep::make_dense_net<double>({4, 3}, rng);
  CHECK(std::isnan(ep::weight_angle_deg(one)));
}

TEST_CASE("ep/net: the weight angle is accurate from 0 to 180 degrees") {
  // B_2^T = cos(t) W_2 / |W_2| + sin(t) P / |P| with P orthogonal to W_2 has angle t exactly
  Rng rng(11);
  auto net = ep::make_dense_net<double>({4, 3, 2}, rng);
  const Eigen::MatrixXd w = net.W[1].value().matrix();
  Eigen::MatrixXd p = test::randn<double>({2, 3}, rng).matrix();
  p -= (p.cwiseProduct(w).sum() / w.squaredNorm()) * w;
  const double pi = 3.14159265358979323846;
  for (double deg : {1e-7, 1e-3, 0.5, 45.0, 90.0, 179.5, 180.0 - 1e-6}) {
    const double t = deg * pi / 180;
    const Eigen::MatrixXd bt = std::cos(t) * w / w.norm() + std::sin(t) * p / p.norm();
    net.B[0].value().matrix() = bt.transpose();
    CAPTURE(deg);
    CHECK(ep::weight_angle_deg(net) == doctest::Approx(deg).epsilon(1e-7));
  }
}

TEST_CASE("ep/metrics: cosine per layer and relative error") {
  ep::State<double> a, b;
  a.layers.push_back(Tensor<double>::from_values({1, 0, 0, 1}, Shape{2, 2}));
  b.layers.push_back(Tensor<double>::from_values({1, 0, 1, 1}, Shape{2, 2}));
  const auto c = ep::cosine_per_layer(a, b);
  REQUIRE(c.size() == 1);
  CHECK(c[0] == doctest::Approx((1 + 1 / std::sqrt(2.0)) / 2));
  CHECK(ep::relative_error(a, b) == doctest::Approx(1 / std::sqrt(3.0)));
  ep::State<double> z;
  z.layers.push_back(Tensor<double>(Shape{2, 2}));
  CHECK(ep::cosine_per_layer(z, b)[0] == 0.0);
  ep::State<double> bad;
  bad.layers.push_back(Tensor<double>(Shape{2, 3}));
  CHECK_THROWS_AS(ep::cosine_per_layer(a, bad), ShapeError);
  CHECK_THROWS_AS(ep::relative_error(a, bad), ShapeError);
}

TEST_CASE("ep/net: bad configurations") {
  Rng rng(5);
  CHECK_THROWS_AS(ep::make_dense_net<double>({16}, rng), ConfigError);
  CHECK_THROWS_AS(ep::make_dense_net<double>({16, 0, 10}, rng), ConfigError);
  ep::NetOptions o;
  o.readout = ep::Readout::mse;
  o.num_classes = 7;
  CHECK_THROWS_AS(ep::make_dense_net<double>({16, 8, 10}, rng, o), ConfigError);
  o = {};
  o.alpha_deg = std::nan("");
  CHECK_THROWS_AS(ep::make_dense_net<double>({16, 8, 10}, rng, o), ValueError);
  // a hand-broken network is rejected by every entry point
  auto net = ep::make_dense_net<double>({6, 5, 4}, rng);
  net.B[0].set_value(Tensor<double>(Shape{4, 5}));
  CHECK_THROWS_AS(ep::jacobian_symmetry(net), ShapeError);
  auto net2 = ep::make_dense_net<double>({6, 5, 4}, rng);
  net2.W[1].value().flat(0) = std::nan("");
  CHECK_THROWS_AS(ep::weight_angle_deg(net2), ValueError);
}

}  // namespace weft_unit_ep_net_test
