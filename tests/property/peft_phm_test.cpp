// Property tests of weft/peft (LoRA and its inits, BoneShared, MissMini, BoneAffine: constructors,
// forward, merge_into / unmerge_from) and weft/phm (PhmLinear options and forward, the
// phm_product / lphm_product functions, Compacter / PHM / bottleneck adapters), on random,
// mismatched, empty and extreme input. See tests/property/property.hpp for the property and how
// to rerun a failing case.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "property/property.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd.hpp"
#include "weft/peft.hpp"
#include "weft/phm.hpp"

namespace weft_unit_property_peft_phm_test {

using namespace weft;
namespace prop = weft::test::prop;

namespace {

template <class T>
void peft_adapters(std::uint64_t seed) {
  prop::run("peft/LoRA family and Bone family: constructors, forward, merge", seed, 300, [](prop::Gen& g) {
    const index_t out = 1 + g.pick(6), in = 1 + g.pick(6);
    Parameter<T> base(g.tensor<T>(Shape{out, in}, "base weight", 0.03), "w");
    const int kind = g.pick(6);  // lora (5 inits) drawn below, bone_shared, miss_mini, bone_affine
    g.note("kind (lora lora lora bone_shared miss_mini bone_affine)", kind);
    std::shared_ptr<nn::SidePath<T>> side;
    std::shared_ptr<nn::WeightTransform<T>> transform;
    peft::Adapter<T>* adapter = nullptr;
    const bool made = prop::construct(g, [&] {
      if (kind <= 2) {
        peft::LoraOptions o;
        o.r = index_t(g.integer("r", 1, std::min(in, out), 0.1, {0, -1, std::min(in, out) + 1},
                                [&](long long r) { return r >= 1 && r <= std::min(in, out); }));
        o.alpha = g.real("alpha", 0.5, 16, 0.1, [](double a) { return a > 0 && std::isfinite(a); });
        if (o.alpha > 1e6 || o.alpha < 1e-6) g.set_exotic();  // merge + unmerge cancels catastrophically
        o.dropout = g.chance(0.7) ? 0.0 : g.real("dropout", 0, 0.5, 0.2, [](double p) { return p >= 0 && p < 1; });
        o.init = peft::LoraInit(g.pick(5));
        g.note("init", peft::detail::lora_method(o.init));
        o.rslora = g.chance(0.3);
        if (o.init == peft::LoraInit::pissa) o.pissa_niter = g.chance(0.5) ? -1 : g.pick(3);
        auto l = std::make_shared<peft::Lora<T>>(base, o, g.rng);
        adapter = l.get();
        side = l;
      } else {
        peft::BoneOptions o;
        o.r = index_t(g.integer("r", 1, std::max(in, out), 0.1, {0, -1}, [](long long) { return true; }));
        o.dropout = g.chance(0.7) ? 0.0 : g.real("dropout", 0, 0.5, 0.2, [](double p) { return p >= 0 && p < 1; });
        o.zero_init = g.chance(0.5);
        o.mini_r = index_t(1 + g.pick(int(out)));
        const bool r_ok = kind == 5 ? (o.r >= 1 && in % o.r == 0 && out % o.r == 0) : (o.r >= 1 && o.r <= in);
        if (!r_ok || (kind == 4 && out % o.mini_r != 0)) g.set_bad_option("shard or block size does not fit the layer");
        if (kind == 3) { auto b = std::make_shared<peft::BoneShared<T>>(base, o, g.rng); adapter = b.get(); side = b; }
        if (kind == 4) { auto b = std::make_shared<peft::MissMini<T>>(base, o, g.rng); adapter = b.get(); side = b; }
        if (kind == 5) { auto b = std::make_shared<peft::BoneAffine<T>>(base, o, g.rng); adapter = b.get(); transform = b; }
      }
    });
    if (!made) return;
    // a step of training so that merging is not a no-op: perturb the adapter's own parameters
    std::vector<std::pair<std::string, Parameter<T>>> ps;
    if (side) side->parameters(ps); else transform->parameters(ps);
    for (auto& p : ps) p.second.value().copy_from(g.tensor<T>(p.second.shape(), "adapter parameter", 0.02, 0.1));
    prop::Watch w;
    w.add(base, "base");
    for (auto& p : ps) w.add(p.second, "adapter parameter");
    if (side) {
      Tensor<T> x = g.tensor<T>(Shape{g.extent(4), g.near(in, "x width")}, "x");
      w.add(x, "x");
      prop::check(g, w, [&] {
        Tape<T> tape;
        Var<T> y = side->forward(tape.constant(x));
        prop::expect_result(g, y.value(), Shape{x.dim(0), out});
        tape.backward(sum(y));
        for (auto& p : ps) prop::expect_result(g, p.second.grad(), p.second.shape());
      });
    } else {
      prop::check(g, w, [&] {
        Tape<T> tape;
        prop::expect_result(g, transform->apply(tape.param(base)).value(), Shape{out, in});
      });
    }
    // merge into a weight of a drawn shape, then unmerge: back to the start (within rounding)
    Tensor<T> wm = g.tensor<T>(Shape{g.near(out, "merge rows"), in}, "merge target", 0.05);
    Tensor<T> start = wm.clone();
    prop::Watch wmw;
    wmw.add(wm, "merge target");
    if (prop::check(g, wmw, [&] { adapter->merge_into(wm); prop::expect_result(g, wm, Shape{out, in}); }) ==
        prop::Outcome::returned) {
      prop::check(g, wmw, [&] {
        adapter->unmerge_from(wm);
        if (!g.exotic()) WEFT_CHECK_CLOSE(wm, start, 1e-3);
      });
    }
  });
}

template <class T>
void phm_layers(std::uint64_t seed) {
  prop::run("phm/PhmLinear options and forward, phm_product, lphm_product", seed, 300, [](prop::Gen& g) {
    const int which = g.pick(3);
    g.note("which (PhmLinear phm_product lphm_product)", which);
    if (which == 0) {
      phm::PhmOptions o;
      o.n = index_t(g.integer("n", 1, 4, 0.1, {0, -1}, [](long long v) { return v >= 1; }));
      o.low_rank = g.chance(0.5);
      o.rank = index_t(g.integer("rank", 1, 3, 0.1, {0, -2}, [&](long long v) { return v >= 1 || !o.low_rank; }));
      o.bias = g.chance(0.5);
      o.shared_rule = false;
      o.factorized_rule = g.chance(0.3);
      o.weight_init = phm::WeightInit(g.pick(4));
      o.path = phm::Path(g.pick(4));
      o.init_range = g.real("init_range", 1e-4, 0.1, 0.1, [](double v) { return v > 0 && std::isfinite(v); });
      const index_t n = std::max<index_t>(o.n, 1);
      const index_t in = n * (1 + g.pick(3)) + (g.chance(0.1) ? 1 : 0), out = n * (1 + g.pick(3)) + (g.chance(0.1) ? 1 : 0);
      g.note("in", in);
      g.note("out", out);
      if (in % n || out % n) g.set_bad_option("n does not divide in and out");
      std::unique_ptr<phm::PhmLinear<T>> layer;
      if (!prop::construct(g, [&] { layer = std::make_unique<phm::PhmLinear<T>>(in, out, g.rng, o); })) return;
      Tensor<T> x = g.tensor<T>(Shape{g.extent(3), g.near(in, "x width")}, "x");
      prop::Watch w;
      w.add(x, "x").add(*layer);
      prop::check(g, w, [&] {
        Tape<T> tape;
        Var<T> y = (*layer)(tape.constant(x));
        prop::expect_result(g, y.value(), Shape{x.dim(0), out});
        tape.backward(sum(y));
        for (auto& p : layer->parameters())
          if (p.requires_grad()) prop::expect_result(g, p.grad(), p.shape());
      });
    } else {
      const index_t n = 1 + g.pick(3), p = 1 + g.pick(3), q = 1 + g.pick(3), r = 1 + g.pick(2);
      Tensor<T> A = g.tensor<T>(Shape{n, g.near(n, "rule rows"), n}, "A");
      Tensor<T> B = which == 1 ? g.tensor<T>(Shape{g.near(n, "B slices"), p, q}, "B") : g.tensor<T>(Shape{n, p, r}, "s");
      const bool bias = g.chance(0.5);
      Tensor<T> t = g.tensor<T>(Shape{n, which == 2 ? g.near(r, "t rows") : r, q}, "t");
      Tensor<T> x = g.tensor<T>(Shape{g.extent(3), g.near(n * p, "x width")}, "x");
      Tensor<T> b = g.tensor<T>(Shape{bias ? g.near(n * q, "bias") : n * q}, "bias");
      prop::Watch w;
      w.add(A, "A").add(B, "B").add(t, "t").add(x, "x").add(b, "bias");
      prop::check(g, w, [&] {
        Tape<T> tape;
        Var<T> xv = tape.variable(x), Av = tape.variable(A), Bv = tape.variable(B), tv = tape.variable(t), bv = tape.variable(b);
        Var<T> y = which == 1 ? (bias ? phm::phm_product(xv, Av, Bv, bv) : phm::phm_product(xv, Av, Bv))
                              : (bias ? phm::lphm_product(xv, Av, Bv, tv, bv) : phm::lphm_product(xv, Av, Bv, tv));
        prop::expect_result(g, y.value(), Shape{x.dim(0), n * q});
        tape.backward(sum(y));
        prop::expect_result(g, xv.grad(), x.shape());
        prop::expect_result(g, Av.grad(), A.shape());
      });
    }
  });
}

template <class T>
void phm_adapters(std::uint64_t seed) {
  prop::run("phm/Compacter, Compacter++, PHM, Houlsby, Pfeiffer adapters", seed, 200, [](prop::Gen& g) {
    const auto kind = phm::AdapterKind(g.pick(5));
    g.note("kind", phm::to_string(kind));
    auto c = phm::AdapterConfig::make(kind);
    c.reduction_factor = index_t(g.integer("reduction_factor", 1, 4, 0.1, {0, -1}, [](long long) { return true; }));
    c.phm.n = index_t(g.integer("n", 1, 3, 0.1, {0, -1}, [](long long) { return true; }));
    c.phm.low_rank = g.chance(0.5);
    const index_t dim = index_t(g.integer("dim", 1, 12, 0.05, {0, -3}, [](long long) { return true; }));
    const index_t m = c.reduction_factor >= 1 ? dim / c.reduction_factor : 0;
    const bool ok = dim >= 1 && c.reduction_factor >= 1 && m >= 1 &&
                    (!c.hypercomplex() || (c.phm.n >= 1 && dim % c.phm.n == 0 && m % c.phm.n == 0));
    if (!ok) g.set_bad_option("dim, reduction factor and n do not fit");
    std::shared_ptr<nn::OutputAdapter<T>> a;
    const bool made = prop::construct(g, [&] {
      phm::RuleOptions ro;
      ro.n = std::max<index_t>(c.phm.n, 1);
      const phm::PhmRule<T> rule = phm::PhmRule<T>::shared(g.rng, ro);
      a = phm::make_adapter<T>(dim, c, rule, g.rng);
    });
    if (!made) return;
    std::vector<std::pair<std::string, Parameter<T>>> ps;
    a->parameters(ps);
    for (auto& p : ps) p.second.value().copy_from(g.tensor<T>(p.second.shape(), "adapter parameter", 0.02, 0.1));
    Tensor<T> h = g.tensor<T>(Shape{g.extent(3), g.extent(3), g.near(dim, "h width")}, "h");
    prop::Watch w;
    w.add(h, "h");
    for (auto& p : ps) w.add(p.second, "adapter parameter");
    prop::check(g, w, [&] {
      Tape<T> tape;
      Var<T> y = a->forward(tape.constant(h));
      prop::expect_result(g, y.value(), h.shape());
      tape.backward(sum(y));
    });
  });
}

}  // namespace

TEST_CASE("property/peft: LoRA, PiSSA, OLoRA, BoneShared, MissMini, BoneAffine") {
  peft_adapters<double>(601);
  peft_adapters<float>(602);
}

TEST_CASE("property/phm: PhmLinear and the PHM products") {
  phm_layers<double>(611);
  phm_layers<float>(612);
}

TEST_CASE("property/phm: adapters") {
  phm_adapters<double>(621);
  phm_adapters<float>(622);
}

}  // namespace weft_unit_property_peft_phm_test
