// Tests of weft/phm/rule.hpp, layer.hpp and path.hpp: parameters and initialisation, every path
// giving the same outputs and gradients, a rule shared by three layers (spec V4), the cached H
// and its invalidation, the path rule, n = 1, and bad configurations.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "nn/nn_test_util.hpp"
#include "phm_test_util.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/nn/optim.hpp"
#include "weft/phm/layer.hpp"

namespace weft_unit_phm_layer_test {

using namespace weft;
using weft::nn_test::param_grad_check;
using weft::phm_test::check_scaled;

namespace {

phm::PhmOptions lphm_options(index_t n = 4, index_t r = 1) {
  phm::PhmOptions o;
  o.n = n;
  o.rank = r;
  return o;
}
phm::PhmOptions full_options(index_t n = 4) {
  phm::PhmOptions o;
  o.n = n;
  o.low_rank = false;
  o.shared_rule = false;
  return o;
}

/// Three layers sharing one rule, as a module (for named_parameters).
struct ThreeLayers : nn::Module<double> {
  phm::PhmRule<double> rule;
  std::vector<phm::PhmLinear<double>> layers;
  void visit(nn::Members<double>& m) override {
    for (std::size_t i = 0; i < layers.size(); ++i) m.child("l" + std::to_string(i), layers[i]);
  }
};

/// Output and parameter gradients of sum(R * layer(x)) (gradients zeroed first).
std::vector<Tensor<double>> run(phm::PhmLinear<double>& l, const Tensor<double>& x, const Tensor<double>& R) {
  l.zero_grad();
  Tape<double> tape;
  Var<double> y = l(tape.constant(x));
  std::vector<Tensor<double>> out{y.value().clone()};
  tape.backward(sum(y * tape.constant(R)));
  for (auto& p : l.parameters()) out.push_back(p.grad().clone());
  return out;
}

double sample_std(const Tensor<double>& t) {
  double s = 0, s2 = 0;
  for (double v : t) {
    s += v;
    s2 += v * v;
  }
  const double n = double(t.numel());
  return std::sqrt(s2 / n - (s / n) * (s / n));
}

}  // namespace

TEST_CASE("phm/layer: parameters, names, shapes and the reference initialisation") {
  Rng rng(31);
  auto rule = phm::PhmRule<double>::shared(rng);
  phm::PhmLinear<double> l(768, 24, rule, rng, lphm_options());
  auto np = l.named_parameters();
  REQUIRE(np.size() == 4);
  CHECK(np[0].first == "phm_rule");
  CHECK(np[1].first == "W_left");
  CHECK(np[2].first == "W_right");
  CHECK(np[3].first == "b");
  CHECK(l.W_left.shape() == Shape{4, 192, 1});
  CHECK(l.W_right.shape() == Shape{4, 1, 6});
  CHECK(phm_test::max_abs(l.b.value()) == 0.0);
  CHECK(l.num_parameters() == 64 + 768 + 24 + 24);
  // glorot-uniform per slice: |s| <= sqrt(2) sqrt(6 / (p + r)), and the draws reach near the bound
  const double beta_s = std::sqrt(2.0) * std::sqrt(6.0 / 193.0), beta_t = std::sqrt(2.0) * std::sqrt(6.0 / 7.0);
  CHECK(phm_test::max_abs(l.W_left.value()) <= beta_s);
  CHECK(phm_test::max_abs(l.W_left.value()) >= 0.9 * beta_s);
  CHECK(phm_test::max_abs(l.W_right.value()) <= beta_t);
  // shared rule N(0, 1e-4^2), per-layer rule N(0, 0.01^2), uniform variants
  Rng r2(32);
  phm::RuleOptions ro;
  ro.n = 8;  // 512 draws
  CHECK(sample_std(phm::PhmRule<double>::shared(r2, ro).a.value()) == doctest::Approx(1e-4).epsilon(0.15));
  CHECK(sample_std(phm::PhmRule<double>::per_layer(r2, ro).a.value()) == doctest::Approx(0.01).epsilon(0.15));
  ro.init = phm::RuleInit::uniform;
  const double mu = phm_test::max_abs(phm::PhmRule<double>::shared(r2, ro).a.value());
  CHECK((mu <= 1.0 && mu > 0.9));
  const double mp = phm_test::max_abs(phm::PhmRule<double>::per_layer(r2, ro).a.value());
  CHECK((mp <= 0.01 && mp > 0.009));
  // factorised rule: 2 n^2 parameters, A = a^L a^R
  ro.factorized = true;
  auto fr = phm::PhmRule<double>::per_layer(r2, ro);
  CHECK(fr.num_parameters() == 128);
  CHECK(fr.value()(3, 2, 5) == doctest::Approx(fr.left.value()(3, 2, 0) * fr.right.value()(3, 0, 5)));
  // the other weight initialisers
  for (auto how : {phm::WeightInit::glorot_normal, phm::WeightInit::normal, phm::WeightInit::xavier_normal}) {
    Tensor<double> w(Shape{2, 300, 100});
    phm::init_phm_weight(w, how, 1e-3, r2);
    const double expect = how == phm::WeightInit::glorot_normal ? std::sqrt(4.0 / 400)
                          : how == phm::WeightInit::normal      ? 1e-3
                                                                : std::sqrt(2.0 / 400);
    CHECK(sample_std(w) == doctest::Approx(expect).epsilon(0.05));
  }
  // full-rank layer with its own rule
  phm::PhmLinear<double> f(24, 12, rng, full_options(4));
  CHECK(f.named_parameters()[0].first == "phm_rule");
  CHECK(f.W.shape() == Shape{4, 6, 3});
  CHECK(f.num_parameters() == 64 + 24 * 12 / 4 + 12);
}

TEST_CASE("phm/layer: factored, materialised and cached paths agree, forward and gradients") {
  Rng rng(33);
  for (bool low_rank : {true, false}) {
    phm::PhmOptions o = low_rank ? lphm_options(4, 2) : full_options(4);
    o.shared_rule = false;
    phm::PhmLinear<double> l(16, 12, rng, o);
    // a non-trivial rule and bias (the reference init makes H tiny)
    for (auto& p : l.parameters()) p.value() = test::randn<double>(p.shape(), rng);
    auto x = test::randn<double>(Shape{2, 5, 16}, rng);
    auto R = test::randn<double>(Shape{2, 5, 12}, rng);
    std::vector<std::vector<Tensor<double>>> res;
    for (phm::Path p : {phm::Path::factored, phm::Path::materialized, phm::Path::automatic}) {
      l.set_path(p);
      res.push_back(run(l, x, R));
      if (p != phm::Path::automatic) CHECK(l.last_path() == p);
    }
    for (std::size_t k = 1; k < res.size(); ++k)
      for (std::size_t i = 0; i < res[0].size(); ++i)
        check_scaled(res[k][i], res[0][i], 1e-12, "path " + std::to_string(k) + " output " + std::to_string(i));
    // the cached path (no parameter gradients) gives the same output
    l.set_path(phm::Path::cached);
    Tape<double> tape;
    no_grad ng;
    Var<double> y = l(tape.constant(x));
    CHECK(l.last_path() == phm::Path::cached);
    check_scaled(y.value(), res[0][0], 1e-12, "cached forward");
    // H itself against the loop reference
    Tensor<double> B = low_rank ? Tensor<double>() : l.W.value();
    if (low_rank) {
      B = Tensor<double>(Shape{4, 4, 3});
      for (index_t i = 0; i < 4; ++i) B[i].matrix() = l.W_left.value()[i].matrix() * l.W_right.value()[i].matrix();
    }
    check_scaled(l.weight(), phm_test::reference_kron_sum(l.rule().a.value(), B), 1e-13, "weight()");
  }
}

TEST_CASE("phm/layer: module gradients against central differences (own, shared and factorised rules)") {
  Rng rng(34);
  auto x = test::randn<double>(Shape{3, 8}, rng);
  for (int variant = 0; variant < 3; ++variant) {
    phm::PhmOptions o = variant == 2 ? full_options(2) : lphm_options(2, 2);
    o.shared_rule = false;
    o.factorized_rule = variant == 1;
    phm::PhmLinear<double> l(8, 6, rng, o);
    for (auto& p : l.parameters()) p.value().copy_from(test::randn<double>(p.shape(), rng));
    auto R = test::randn<double>(Shape{3, 6}, rng);
    auto r = param_grad_check(l.parameters(), [&](Tape<double>& tape) {
      return sum(l(tape.constant(x)) * tape.constant(R));
    });
    INFO("variant ", variant);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("phm/layer: three layers sharing a rule (spec V4)") {
  Rng rng(35);
  ThreeLayers m;
  m.rule = phm::PhmRule<double>::shared(rng);
  m.rule.a.value().copy_from(test::randn<double>(Shape{4, 4, 4}, rng));
  const index_t dims[][2] = {{16, 8}, {8, 16}, {16, 4}};
  for (auto& d : dims) m.layers.emplace_back(d[0], d[1], m.rule, rng, lphm_options());
  std::vector<Tensor<double>> xs;
  for (auto& d : dims) xs.push_back(test::randn<double>(Shape{5, d[0]}, rng));
  // dA of the three layers together == sum of the dA of each alone (1e-12)
  Tensor<double> parts(Shape{4, 4, 4});
  for (std::size_t l = 0; l < 3; ++l) {
    m.zero_grad();
    Tape<double> tape;
    tape.backward(sum(square(m.layers[l](tape.constant(xs[l])))));
    parts.array() += m.rule.a.grad().array();
  }
  m.zero_grad();
  {
    Tape<double> tape;
    Var<double> loss = sum(square(m.layers[0](tape.constant(xs[0]))));
    for (std::size_t l = 1; l < 3; ++l) loss = loss + sum(square(m.layers[l](tape.constant(xs[l]))));
    tape.backward(loss);
  }
  CHECK(phm_test::max_abs(parts) > 0);
  check_scaled(m.rule.a.grad(), parts, 1e-12, "dA of the shared rule");
  // the rule appears once in the trainable list; n^3 counted once
  auto np = m.named_parameters();
  int rules = 0;
  for (auto& e : np) rules += e.first.find("phm_rule") != std::string::npos;
  CHECK(rules == 1);
  CHECK(np[0].first == "l0.phm_rule");
  index_t expect = 64;
  for (auto& d : dims) expect += (d[0] + d[1]) + d[1];
  CHECK(m.num_parameters() == expect);
  // one optimiser step on A changes the H of all three layers
  std::vector<Tensor<double>> before;
  for (auto& l : m.layers) before.push_back(l.weight());
  nn::SGDOptions so;
  so.lr = 0.1;
  nn::SGD<double> opt(std::vector<Parameter<double>>{m.rule.a}, so);
  opt.step();
  for (std::size_t l = 0; l < 3; ++l) CHECK_FALSE(test::identical(before[l], m.layers[l].weight()));
  // the layers hold the same parameter, not copies
  for (auto& l : m.layers) CHECK(l.rule().a == m.rule.a);
}

TEST_CASE("phm/layer: the cached H is rebuilt whenever a parameter value changes") {
  Rng rng(36);
  auto rule = phm::PhmRule<double>::shared(rng);
  rule.a.value().copy_from(test::randn<double>(Shape{4, 4, 4}, rng));
  phm::PhmOptions o = lphm_options();
  o.path = phm::Path::cached;
  phm::PhmLinear<double> l(16, 8, rule, rng, o), other(8, 16, rule, rng, o);
  auto x = test::randn<double>(Shape{3, 16}, rng);
  auto factored = [&]() {
    Tape<double> tape;
    no_grad ng;
    return phm::lphm_product(tape.constant(x), tape.constant(rule.a.value()), tape.constant(l.W_left.value()),
                             tape.constant(l.W_right.value()), tape.constant(l.b.value()))
        .value()
        .clone();
  };
  auto cached = [&]() {
    Tape<double> tape;
    no_grad ng;
    Tensor<double> y = l(tape.constant(x)).value().clone();
    CHECK(l.last_path() == phm::Path::cached);
    return y;
  };
  check_scaled(cached(), factored(), 1e-12, "first build");
  CHECK(l.cache_builds() == 1);
  cached();
  CHECK(l.cache_builds() == 1);  // reused
  l.W_left.value().flat(3) += 0.5;  // a hand edit
  check_scaled(cached(), factored(), 1e-12, "after a hand edit");
  CHECK(l.cache_builds() == 2);
  l.W_right.set_value(test::randn<double>(l.W_right.shape(), rng));  // a new tensor
  check_scaled(cached(), factored(), 1e-12, "after set_value");
  CHECK(l.cache_builds() == 3);
  {  // an optimiser step on the shared rule through another layer
    Tape<double> tape;
    tape.backward(sum(square(other(tape.constant(test::randn<double>(Shape{2, 8}, rng))))));
    nn::Adam<double> opt(other.parameters());
    opt.step();
  }
  check_scaled(cached(), factored(), 1e-12, "after a step on the shared rule");
  CHECK(l.cache_builds() == 4);
  l.invalidate();
  cached();
  CHECK(l.cache_builds() == 5);
  // with gradients of A or the weights needed, the cache is not used
  {
    Tape<double> tape;
    l(tape.constant(x));
    CHECK(l.last_path() != phm::Path::cached);
  }
  // frozen parameters: the cache serves the input gradient
  l.set_requires_grad(false);
  rule.a.set_requires_grad(false);
  Tape<double> tape;
  auto xv = tape.variable(x);
  tape.backward(sum(square(l(xv))));
  CHECK(l.last_path() == phm::Path::cached);
  Tape<double> tape2;
  auto xv2 = tape2.variable(x);
  tape2.backward(sum(square(phm::lphm_product(xv2, tape2.constant(rule.a.value()), tape2.constant(l.W_left.value()),
                                              tape2.constant(l.W_right.value()), tape2.constant(l.b.value())))));
  check_scaled(xv.grad(), xv2.grad(), 1e-12, "dx through the cached H");
}

TEST_CASE("phm/layer: the path rule") {
  ops::KronDims m;
  m.n = 4;
  m.p = 192;
  m.q = 192;  // 768 x 768, full B
  m.rows = 1;
  CHECK(phm::choose_path(m, true, false) == phm::Path::factored);
  m.rows = 64;
  CHECK(phm::choose_path(m, true, false) == phm::Path::factored);
  m.rows = 100000;  // far beyond the crossover near k / n
  CHECK(phm::choose_path(m, true, false) == phm::Path::materialized);
  m.rows = 64;  // inference with a cache: one GEMM beats the factored product
  CHECK(phm::choose_path(m, false, true) == phm::Path::cached);
  m.r = 1;  // LPHM: factored at every batch size when training
  for (index_t rows : {1, 8, 64, 4096}) {
    m.rows = rows;
    CHECK(phm::choose_path(m, true, false) == phm::Path::factored);
  }
  const phm::PathCosts c = phm::path_costs(m, true);
  CHECK(c.factored < c.materialized);
  CHECK(std::string(phm::to_string(phm::Path::cached)) == "cached");
}

TEST_CASE("phm/layer: n = 1 is a scaled linear layer, n = in = out works") {
  Rng rng(37);
  phm::PhmLinear<double> l(5, 3, rng, full_options(1));
  const double a = l.rule().a.value().flat(0);
  Tensor<double> expect(Shape{5, 3});
  expect.matrix() = a * l.W.value().reshape({5, 3}).matrix();
  check_scaled(l.weight(), expect, 1e-15, "n = 1");
  phm::PhmLinear<double> l6(6, 6, rng, full_options(6));
  Tape<double> tape;
  CHECK(l6(tape.constant(test::randn<double>(Shape{2, 6}, rng))).shape() == Shape{2, 6});
}

TEST_CASE("phm/layer: bad configurations and inputs raise clear errors") {
  Rng rng(38);
  WEFT_PHM_CHECK_FAILS(phm::PhmLinear<double>(10, 8, rng, lphm_options(4)), ConfigError, "phm::PhmLinear");
  CHECK_THROWS_WITH(phm::PhmLinear<double>(10, 8, rng, lphm_options(4)),
                    doctest::Contains("n = 4 to divide both in and out features, got in = 10 (remainder 2)"));
  WEFT_PHM_CHECK_FAILS(phm::PhmLinear<double>(8, 6, rng, lphm_options(4)), ConfigError, "phm::PhmLinear");
  WEFT_PHM_CHECK_FAILS(phm::PhmLinear<double>(8, 8, rng, lphm_options(0)), ConfigError, "phm::PhmLinear");
  WEFT_PHM_CHECK_FAILS(phm::PhmLinear<double>(8, 8, rng, lphm_options(4, 0)), ConfigError, "phm::PhmLinear");
  WEFT_PHM_CHECK_FAILS(phm::PhmLinear<double>(0, 8, rng, lphm_options(4)), ShapeError, "phm::PhmLinear");
  // a shared-rule layer used before its rule is set
  phm::PhmLinear<double> l(8, 8, rng, lphm_options(4));
  Tape<double> tape;
  auto x = tape.constant(test::randn<double>(Shape{2, 8}, rng));
  WEFT_PHM_CHECK_FAILS(l(x), ConfigError, "phm::PhmLinear::forward");
  CHECK_THROWS_WITH(l(x), doctest::Contains("set_rule()"));
  // a shared rule of the wrong n
  phm::RuleOptions ro;
  ro.n = 2;
  auto r2 = phm::PhmRule<double>::shared(rng, ro);
  WEFT_PHM_CHECK_FAILS(l.set_rule(r2), ConfigError, "phm::PhmLinear::set_rule");
  WEFT_PHM_CHECK_FAILS(phm::PhmLinear<double>(8, 8, r2, rng, lphm_options(4)), ConfigError, "phm::PhmLinear");
  WEFT_PHM_CHECK_FAILS(l.set_rule(phm::PhmRule<double>()), ConfigError, "phm::PhmLinear::set_rule");
  WEFT_PHM_CHECK_FAILS(phm::PhmRule<double>().var(tape), ConfigError, "phm::PhmRule::var");
  ro.n = 0;
  WEFT_PHM_CHECK_FAILS(phm::PhmRule<double>::shared(rng, ro), ConfigError, "phm::PhmRule::shared");
  // once set, a wrong input shape is a ShapeError and the parameters are untouched
  ro.n = 4;
  l.set_rule(phm::PhmRule<double>::shared(rng, ro));
  test::Snapshot<double> snap({l.W_left.value(), l.W_right.value(), l.b.value(), l.rule().a.value()});
  WEFT_PHM_CHECK_FAILS(l(tape.constant(Tensor<double>(Shape{2, 7}))), ShapeError, "phm::PhmLinear::forward");
  CHECK(snap.unchanged());
  CHECK(l(x).shape() == Shape{2, 8});
  phm::PhmLinear<double> empty;
  WEFT_PHM_CHECK_FAILS(empty(x), ConfigError, "phm::PhmLinear::forward");
  Tensor<double> w(Shape{4, 0, 2});
  WEFT_PHM_CHECK_FAILS(phm::init_phm_weight(w, phm::WeightInit::normal, 1e-4, rng), ShapeError, "phm::init_phm_weight");
  // a non-finite init_range (found by the property suite: +inf passed the check and gave NaN weights)
  for (double bad : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN(), 0.0}) {
    phm::PhmOptions o = lphm_options(4);
    o.shared_rule = false;
    o.weight_init = phm::WeightInit::normal;
    o.init_range = bad;
    WEFT_PHM_CHECK_FAILS(phm::PhmLinear<double>(8, 8, rng, o), ValueError, "phm::PhmLinear");
  }
}

}  // namespace weft_unit_phm_layer_test
