// Property tests of weft/prune (masks from scores with every option, the magnitude / Wanda /
// OBS scores, HessianStats, SparseGPT-style pruning), weft/reparam (the compander's options and
// forward/backward) and weft/ep (dense nets, free and nudged relaxations, the holomorphic EP
// error estimate, homeostasis), on random, mismatched, empty and extreme input. See
// tests/property/property.hpp for the property and how to rerun a failing case.
#include <doctest/doctest.h>

#include <complex>
#include <cstdint>
#include <memory>
#include <vector>

#include "property/property.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd.hpp"
#include "weft/ep.hpp"
#include "weft/prune.hpp"
#include "weft/reparam.hpp"

namespace weft_unit_property_prune_reparam_ep_test {

using namespace weft;
namespace prop = weft::test::prop;

namespace {

template <class T>
void masks(std::uint64_t seed) {
  prop::run("prune/select_mask with every rule and group, scores", seed, 400, [](prop::Gen& g) {
    const index_t rows = g.extent(6), cols = g.extent(9);
    prune::MaskOptions o;
    o.sparsity = g.real("sparsity", 0, 0.95, 0.12, [](double s) { return s >= 0 && s < 1; });
    o.rule = prune::threshold_rule(g.pick(3));
    o.group = prune::mask_group(g.pick(4));
    o.block_cols = index_t(g.integer("block_cols", 1, 4, 0.1, {0, -1}, [&](long long v) { return v >= 1 || o.group != prune::mask_group::column_block; }));
    o.m = index_t(g.integer("m", 1, 4, 0.1, {0, -1}, [&](long long v) { return v >= 1 || o.group != prune::mask_group::n_of_m; }));
    o.n = index_t(g.integer("n", 0, std::max<index_t>(o.m, 0), 0.1, {-1, o.m + 1}, [&](long long v) { return (v >= 0 && v <= o.m) || o.group != prune::mask_group::n_of_m; }));
    if (o.group == prune::mask_group::n_of_m && o.m >= 1 && cols % o.m != 0) g.set_bad_option("m does not divide the columns");
    const int score = g.pick(3);
    g.note("scores (magnitude wanda raw)", score);
    Tensor<T> w = g.tensor<T>(Shape{rows, cols}, "w");
    Tensor<T> norms = g.tensor<T>(Shape{score == 1 ? g.near(cols, "norms") : cols}, "norms");
    for (auto& v : norms) v = T(std::abs(double(v)));
    prop::Watch wa;
    wa.add(w, "w").add(norms, "norms");
    prop::check(g, wa, [&] {
      const Tensor<T> s = score == 0 ? prune::magnitude_scores(w) : score == 1 ? prune::wanda_scores(w, norms) : w;
      CHECK(s.shape() == w.shape());
      const prune::Mask m = prune::select_mask(s, o);
      m.validate();
      CHECK(m.rows == rows);
      CHECK(m.cols == cols);
      if (o.group == prune::mask_group::matrix && o.rule == prune::threshold_rule::exact_count)
        CHECK(m.zeros() == prune::prune_count(o.sparsity, rows * cols));
    });
  });
}

template <class T>
void hessian_and_sparsegpt(std::uint64_t seed) {
  prop::run("prune/HessianStats, obs_diag_importance, sparsegpt_prune", seed, 200, [](prop::Gen& g) {
    const index_t din = index_t(g.integer("din", 1, 6, 0.06, {0, -1}, [](long long v) { return v > 0; }));
    std::unique_ptr<prune::HessianStats<T>> st;
    if (!prop::construct(g, [&] { st = std::make_unique<prune::HessianStats<T>>(din, true); })) return;
    Tensor<T> x = g.tensor<T>(Shape{g.extent(8), g.near(din, "x width")}, "calibration x");
    prop::Watch wx;
    wx.add(x, "x");
    if (prop::check(g, wx, [&] { st->add_batch(x); }) != prop::Outcome::returned) return;
    const index_t dout = 1 + g.pick(4);
    Tensor<T> w = g.tensor<T>(Shape{dout, g.near(din, "w width")}, "w");
    const double percdamp = g.real("percdamp", 0.01, 0.1, 0.1, [](double p) { return p >= 0 && std::isfinite(p); });
    prop::Watch ww;
    ww.add(w, "w");
    prop::check(g, ww, [&] { prop::expect_result(g, prune::obs_diag_importance(w, *st, percdamp), w.shape()); });
    prune::SparseGPTOptions so;
    so.sparsity = g.real("sparsity", 0, 0.9, 0.1, [](double s) { return s >= 0 && s < 1; });
    so.blocksize = index_t(g.integer("blocksize", 1, 4, 0.1, {0, -1}, [](long long v) { return v >= 1; }));
    so.percdamp = percdamp;
    so.n_of_m = g.chance(0.2);
    if (so.n_of_m && din % so.m != 0) g.set_must_fail("m does not divide din");
    prop::check(g, ww, [&] {
      const auto r = prune::sparsegpt_prune(w, st->hessian(), so);
      prop::expect_result(g, r.weight, w.shape());
      r.mask.validate();
      for (index_t i = 0; i < w.numel(); ++i)
        if (!r.mask.keep[std::size_t(i)]) CHECK(r.weight.flat(i) == T(0));
    });
  });
}

template <class T>
void compander(std::uint64_t seed) {
  prop::run("reparam/Compander: options, forward, backward", seed, 300, [](prop::Gen& g) {
    reparam::CompanderOptions o;
    auto pos = [](double v) { return positive_in<T>(v); };
    o.a = g.real("a", 0.1, 2, 0.12, pos);
    o.b = g.real("b", 0.1, 2, 0.12, pos);
    o.learnable = g.chance(0.3);
    o.floor = g.chance(0.7) ? 1e-3 : g.real("floor", 1e-4, 1e-2, 0.2, pos);
    if (o.learnable && positive_in<T>(o.floor) && (o.a < o.floor || o.b < o.floor)) g.set_bad_option("a or b below the floor");
    const int psi = g.pick(3);
    g.note("psi (atan erf asinh)", psi);
    std::shared_ptr<nn::WeightTransform<T>> c;
    if (!prop::construct(g, [&] {
          if (psi == 0) c = std::make_shared<reparam::Compander<T, reparam::AtanPsi>>(o);
          if (psi == 1) c = std::make_shared<reparam::Compander<T, reparam::ErfPsi>>(o);
          if (psi == 2) c = std::make_shared<reparam::Compander<T, reparam::AsinhPsi>>(o);
        }))
      return;
    const index_t r = g.extent(4);
    Tensor<T> v = g.tensor<T>(g.chance(0.5) ? Shape{r, g.extent(4)} : Shape{r}, "v");
    prop::Watch w;
    w.add(v, "v");
    prop::check(g, w, [&] {
      Tape<T> tape;
      Var<T> vv = tape.variable(v);
      Var<T> y = c->apply(vv);
      prop::expect_result(g, y.value(), v.shape());
      tape.backward(sum(y));
      prop::expect_result(g, vv.grad(), v.shape());
      prop::expect_result(g, c->fold(v), v.shape());
    });
  });
}

template <class T>
void ep_nets(std::uint64_t seed) {
  prop::run("ep/make_dense_net, free_phase, hep_error, homeostasis", seed, 120, [](prop::Gen& g) {
    std::vector<index_t> sizes(std::size_t(1 + g.pick(3)));
    for (auto& s : sizes) s = index_t(g.integer("size", 1, 4, 0.06, {0, -1}, [](long long v) { return v > 0; }));
    if (sizes.size() < 2) g.set_bad_option("fewer than two sizes");
    ep::NetOptions no;
    no.readout = g.chance(0.5) ? ep::Readout::softmax : ep::Readout::mse;
    no.num_classes = index_t(g.integer("num_classes", 2, 3, 0.08, {0, -1}, [&](long long v) {
      return no.readout == ep::Readout::mse ? true : v >= 1;
    }));
    if (no.readout == ep::Readout::mse) no.num_classes = sizes.back();
    no.alpha_deg = g.real("alpha_deg", 0, 90, 0.1, [](double a) { return std::isfinite(a); });
    std::unique_ptr<ep::DenseNet<T>> net;
    if (!prop::construct(g, [&] { net = std::make_unique<ep::DenseNet<T>>(ep::make_dense_net<T>(sizes, g.rng, no)); })) return;
    const index_t batch = g.extent(3);
    Tensor<T> X = g.tensor<T>(Shape{batch, g.near(sizes.front(), "X width")}, "X");
    ep::RelaxOptions ro;
    ro.gamma = g.real("gamma", 0.3, 1, 0.08, [](double v) { return v > 0 && v <= 2; });
    ro.max_iters = index_t(g.integer("max_iters", 1, 30, 0.05, {0, -1}, [](long long v) { return v >= 0; }));
    ro.tol = g.chance(0.5) ? 0.0 : g.real("tol", 1e-8, 1e-3, 0.1, [](double v) { return v >= 0 && std::isfinite(v); });
    ro.block_rows = index_t(g.integer("block_rows", 2, 64, 0.05, {1, 0, -1}, [](long long v) { return v >= 2; }));
    if (batch == 0) g.set_must_fail("empty batch");
    std::vector<Tensor<T>> before;
    for (auto& p : net->parameters()) before.push_back(p.value().clone());
    prop::Watch w;
    w.add(X, "X");
    for (auto& p : net->parameters()) w.add(p, "net parameter");
    ep::State<T> u0 = ep::zero_state<T>(*net, batch);
    if (prop::check(g, w, [&] {
          const auto rep = ep::free_phase(*net, X, u0, ro);
          for (index_t l = 1; l <= net->layers(); ++l) prop::expect_result(g, u0.layers[std::size_t(l - 1)], Shape{batch, net->size(l)});
          CHECK(rep.columns >= 0);
        }) != prop::Outcome::returned)
      return;
    std::vector<int> y(static_cast<std::size_t>(batch));
    for (auto& l : y) l = g.pick(int(net->classes()));
    if (!y.empty() && g.chance(0.05)) y[0] = int(net->classes()), g.set_must_fail("label out of range");
    ep::HepOptions ho;
    ho.N = int(g.integer("N", 0, 4, 0.08, {-1}, [](long long v) { return v >= 0; }));
    ho.abs_beta = g.real("abs_beta", 0.05, 1, 0.08, [&](double v) { return (v > 0 && std::isfinite(v)) || ho.N == 0; });
    ho.relax.max_iters = 20;
    ho.allow_divergence = g.chance(0.3);
    prop::check(g, w, [&] {
      const auto est = ep::hep_error(*net, X, y, u0, ho);
      for (index_t l = 1; l <= net->layers(); ++l)
        CHECK(est.e.layers[std::size_t(l - 1)].shape() == Shape{batch, net->size(l)});
    });
    const double lambda = g.real("homeostasis lambda", 0, 1, 0.1, [](double v) { return v >= 0 && std::isfinite(v); });
    prop::Watch none;
    prop::check(g, none, [&] {
      const double v = ep::add_expected_homeostasis_gradient(*net, lambda);
      prop::expect_finite(g, v, "homeostasis expectation");
      for (auto& p : net->parameters()) prop::expect_result(g, p.grad(), p.shape());
    });
  });
}

template <class T>
void dual_importance(std::uint64_t seed) {
  prop::run("prune/DualImportance: options and general importances", seed, 300, [](prop::Gen& g) {
    const int nw = g.pick(3);
    std::vector<Parameter<T>> ws;
    std::vector<Tensor<T>> general;
    for (int i = 0; i < nw; ++i) {
      ws.emplace_back(g.tensor<T>(Shape{1 + g.pick(3), 1 + g.pick(3)}, "weight"), "w");
      Tensor<T> gi = g.tensor<T>(Shape{g.near(ws.back().shape()[0], "general rows"), ws.back().shape()[1]}, "general");
      for (auto& v : gi) v = T(std::abs(double(v)));  // NaN stays NaN: then the case must fail
      if (!gi.all_finite()) g.set_bad_option("non-finite general importance");
      general.push_back(gi);
    }
    if (nw == 0) g.set_bad_option("no weight");
    if (nw > 0 && g.chance(0.05)) general.pop_back(), g.set_bad_option("one general importance missing");
    prune::DualOptions o;
    o.kind = prune::coupling(g.pick(3));
    o.c = g.real("c", 0, 20, 0.1, [](double v) { return v >= 0 && std::isfinite(v); });
    o.lambda = g.real("lambda", 0, 1, 0.1, [](double v) { return v >= 0 && std::isfinite(v); });
    o.second_order_scale = g.real("second_order_scale", 0, 1, 0.1, [](double v) { return std::isfinite(v); });
    o.taylor_sign = g.chance(0.9) ? (g.chance(0.5) ? 1.0 : -1.0) : 0.5;
    if (o.taylor_sign == 0.5) g.set_bad_option("taylor_sign");
    o.clip_norm = g.real("clip_norm", 0, 2, 0.1, [](double v) { return v >= 0 && std::isfinite(v); });
    prop::Watch w;
    for (auto& p : ws) w.add(p, "weight");
    for (auto& t : general) w.add(t, "general");
    std::unique_ptr<prune::DualImportance<T>> d;
    if (!prop::construct(g, [&] { d = std::make_unique<prune::DualImportance<T>>(ws, general, o); })) {
      CHECK(w.changed().empty());
      return;
    }
    prop::check(g, w, [&] {
      for (std::size_t i = 0; i < ws.size(); ++i) prop::expect_result(g, d->importance(i), ws[i].shape());
    });
  });
}

}  // namespace

TEST_CASE("property/prune: masks and scores") {
  masks<double>(701);
  masks<float>(702);
}

TEST_CASE("property/prune: D-Pruner dual importance options") {
  dual_importance<double>(741);
  dual_importance<float>(742);
}

TEST_CASE("property/prune: Hessian statistics, OBS importance and SparseGPT") {
  hessian_and_sparsegpt<double>(711);
  hessian_and_sparsegpt<float>(712);
}

TEST_CASE("property/reparam: compander") {
  compander<double>(721);
  compander<float>(722);
}

TEST_CASE("property/ep: nets, relaxations, estimators, homeostasis") {
  ep_nets<double>(731);
  ep_nets<float>(732);
}

}  // namespace weft_unit_property_prune_reparam_ep_test
