// Tests of weft/phm/adapter.hpp and count.hpp: identity at init (spec V5), placement in
// TransformerBlocks with one shared rule, the trainable set, gradients, the parameter counts of
// the paper from a configuration alone (spec V3) and against allocated models, bad configurations.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nn/nn_test_util.hpp"
#include "phm_test_util.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/phm/adapter.hpp"
#include "weft/phm/count.hpp"

namespace weft_unit_phm_adapter_test {

using namespace weft;
using weft::nn_test::param_grad_check;
using weft::phm_test::check_scaled;

namespace {

struct Blocks : nn::Module<double> {
  std::vector<nn::TransformerBlock<double>> blocks;
  Blocks(index_t depth, index_t dim, Rng& rng) {
    for (index_t i = 0; i < depth; ++i) blocks.emplace_back(dim, 2, 2, rng);
  }
  Var<double> forward(Var<double> x) {
    for (auto& b : blocks) x = b(x);
    return x;
  }
  void visit(nn::Members<double>& m) override {
    for (std::size_t i = 0; i < blocks.size(); ++i) m.child("blocks." + std::to_string(i), blocks[i]);
  }
};

}  // namespace

TEST_CASE("phm/adapter: Compacter is the identity at init to 1e-5 max|x| (spec V5)") {
  Rng rng(41);
  const index_t shapes[][2] = {{64, 8}, {768, 32}};  // (k, reduction factor): m = 8 and m = 24
  for (auto& sh : shapes) {
    auto c = phm::AdapterConfig::make(phm::AdapterKind::compacter);
    c.reduction_factor = sh[1];
    auto rule = phm::PhmRule<double>::shared(rng, phm::shared_rule_options(c.phm));
    double worst = 0;
    for (int draw = 0; draw < 20; ++draw) {
      phm::HypercomplexAdapter<double> f(sh[0], c, rule, rng);
      auto x = test::randn<double>(Shape{16, sh[0]}, rng);
      Tape<double> tape;
      no_grad ng;
      Tensor<double> y = f.forward(tape.constant(x)).value();
      double dev = 0;
      for (index_t i = 0; i < x.numel(); ++i) dev = std::max(dev, std::abs(y.flat(i) - x.flat(i)));
      worst = std::max(worst, dev / phm_test::max_abs(x));
    }
    INFO("k = ", sh[0], ": max |f(x) - x| / max |x| over 20 draws = ", worst);
    CHECK(worst <= 1e-5);
    CHECK(worst > 0);  // the adapter does act (H is tiny, not zero)
  }
  // the dense bottleneck is exactly the identity (up = 0)
  auto c = phm::AdapterConfig::make(phm::AdapterKind::houlsby);
  c.reduction_factor = 8;
  phm::BottleneckAdapter<double> d(64, c, rng);
  auto x = test::randn<double>(Shape{4, 64}, rng);
  Tape<double> tape;
  CHECK(test::identical(d.forward(tape.constant(x)).value(), x));
}

TEST_CASE("phm/adapter: placement in TransformerBlocks, one shared rule, gradients") {
  Rng rng(42);
  auto x = test::randn<double>(Shape{2, 3, 16}, rng);
  for (auto kind : {phm::AdapterKind::compacter, phm::AdapterKind::compacter_plus_plus, phm::AdapterKind::phm_adapter,
                    phm::AdapterKind::houlsby, phm::AdapterKind::pfeiffer}) {
    INFO(phm::to_string(kind));
    Rng r(7);
    Blocks m(2, 16, r);
    Tensor<double> before;
    {
      Tape<double> tape;
      before = m.forward(tape.constant(x)).value().clone();
    }
    auto c = phm::AdapterConfig::make(kind);
    c.reduction_factor = 4;  // m = 4
    if (kind == phm::AdapterKind::phm_adapter) c.phm.n = 4;
    auto set = phm::add_adapters(m.blocks, c, r);
    const index_t sites = c.after_attention() ? 2 : 1;
    CHECK(index_t(set.adapters.size()) == 2 * sites);
    CHECK(m.blocks[0].mlp.layers.back().output_adapters().size() == 1);
    CHECK(m.blocks[1].attn.out_proj.output_adapters().size() == std::size_t(sites - 1));
    // the model at init is (almost) unchanged
    Tensor<double> after;
    {
      Tape<double> tape;
      after = m.forward(tape.constant(x)).value().clone();
    }
    check_scaled(after, before, kind == phm::AdapterKind::phm_adapter ? 1e-3 : 1e-6, "output at init");
    // parameter names and counts: the shared rule once
    auto np = m.named_parameters();
    int rules = 0;
    for (auto& e : np) rules += e.first.find("phm_rule") != std::string::npos;
    const bool shared = kind == phm::AdapterKind::compacter || kind == phm::AdapterKind::compacter_plus_plus;
    CHECK(rules == (shared ? 1 : kind == phm::AdapterKind::phm_adapter ? 2 * 2 * sites : 0));
    if (shared) CHECK(np[std::size_t(std::find_if(np.begin(), np.end(), [](auto& e) {
                                        return e.first.find("phm_rule") != std::string::npos;
                                      }) - np.begin())]
                          .first == (c.after_attention() ? "blocks.0.attn.out_proj.adapters.0.compacter.down.phm_rule"
                                                         : "blocks.0.mlp.layers.1.adapters.0.compacter.down.phm_rule"));
    phm::ModelShape ms;
    ms.hidden = 16;
    ms.blocks = 2;
    ms.layer_norm_params = 2 * 2 * 2 * 16;  // ln1, ln2 per block, gamma and beta
    ms.total_params = m.num_parameters();
    const phm::ParameterCount pc = phm::count_parameters(ms, c);
    CHECK(set.num_parameters() + ms.layer_norm_params == pc.trainable);
    // the paper's trainable set
    phm::train_adapters_only(m, set);
    CHECK(m.num_parameters(true) == pc.trainable);
    // gradients reach every adapter parameter (and the shared rule from all adapters)
    m.zero_grad();
    Tape<double> tape;
    tape.backward(sum(square(m.forward(tape.constant(x)))));
    if (c.hypercomplex())  // (a dense adapter's down layer gets no gradient while up = 0)
      for (auto& p : set.parameters()) CHECK_MESSAGE(phm_test::max_abs(p.grad()) > 0, p.name());
  }
}

TEST_CASE("phm/adapter: adapter gradients against central differences") {
  Rng rng(43);
  for (auto kind : {phm::AdapterKind::compacter, phm::AdapterKind::phm_adapter}) {
    auto c = phm::AdapterConfig::make(kind);
    c.reduction_factor = 2;
    c.phm.n = 2;
    auto rule = phm::PhmRule<double>::shared(rng, phm::shared_rule_options(c.phm));
    phm::HypercomplexAdapter<double> f(8, c, rule, rng);
    std::vector<std::pair<std::string, Parameter<double>>> ps;
    f.parameters(ps);
    std::vector<Parameter<double>> params;
    for (auto& e : ps) {
      e.second.value().copy_from(test::randn<double>(e.second.shape(), rng, 0.0, 0.5));  // away from the tiny init
      if (std::find(params.begin(), params.end(), e.second) == params.end()) params.push_back(e.second);
    }
    auto x = test::randn<double>(Shape{3, 8}, rng);
    auto R = test::randn<double>(Shape{3, 8}, rng);
    auto r = param_grad_check(params, [&](Tape<double>& tape) { return sum(f.forward(tape.constant(x)) * tape.constant(R)); });
    INFO(phm::to_string(kind));
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("phm/count: the T5-base counts and fractions of the paper from a configuration (spec V3)") {
  const phm::ModelShape t5 = phm::ModelShape::t5_base();
  auto cpp = phm::count_parameters(t5, phm::AdapterConfig::make(phm::AdapterKind::compacter_plus_plus));
  CHECK(cpp.per_adapter == 2376);
  CHECK(cpp.adapters == 24);
  CHECK(cpp.shared_rule == 64);
  CHECK(cpp.layer_norms == 47616);
  CHECK(cpp.trainable == 104704);
  CHECK(std::round(cpp.fraction * 1e6) / 1e4 == doctest::Approx(0.0470));
  auto cp = phm::count_parameters(t5, phm::AdapterConfig::make(phm::AdapterKind::compacter));
  CHECK(cp.per_adapter == 2376);
  CHECK(cp.trainable == 161728);
  CHECK(std::round(cp.fraction * 1e6) / 1e4 == doctest::Approx(0.0726));
  auto pa = phm::count_parameters(t5, phm::AdapterConfig::make(phm::AdapterKind::phm_adapter));
  CHECK(pa.per_adapter == 7320);
  CHECK(pa.shared_rule == 0);
  CHECK(pa.trainable == 398976);
  CHECK(std::round(pa.fraction * 1e5) / 1e3 == doctest::Approx(0.179));
  auto ho = phm::count_parameters(t5, phm::AdapterConfig::make(phm::AdapterKind::houlsby));
  CHECK(ho.per_adapter == 37656);
  CHECK(ho.trainable == 1855104);
  CHECK(std::round(ho.fraction * 1e5) / 1e3 == doctest::Approx(0.832));
  auto pf = phm::count_parameters(t5, phm::AdapterConfig::make(phm::AdapterKind::pfeiffer));
  CHECK(pf.trainable == 951360);
  CHECK(std::round(pf.fraction * 1e5) / 1e3 == doctest::Approx(0.427));
  // layer formulas
  phm::PhmOptions o;
  CHECK(phm::phm_linear_parameters(768, 24, o) == 768 + 24 + 24);  // shared rule, r = 1
  o.shared_rule = false;
  o.low_rank = false;
  CHECK(phm::phm_linear_parameters(768, 24, o) == 64 + 768 * 24 / 4 + 24);
  o.factorized_rule = true;
  CHECK(phm::phm_linear_parameters(768, 24, o) == 32 + 768 * 24 / 4 + 24);
  CHECK(phm::linear_parameters(768, 24) == 768 * 24 + 24);
  // the count of an allocated layer agrees
  Rng rng(44);
  phm::PhmLinear<float> l(768, 24, rng, o);
  CHECK(l.num_parameters() == phm::phm_linear_parameters(768, 24, o));
}

TEST_CASE("phm/adapter: bad configurations raise ConfigError naming the numbers") {
  Rng rng(45);
  auto c = phm::AdapterConfig::make(phm::AdapterKind::compacter);
  c.reduction_factor = 16;
  c.phm.n = 5;  // 768 / 16 = 48: neither 768 nor 48 is divisible by 5
  WEFT_PHM_CHECK_FAILS(phm::adapter_parameters(768, c), ConfigError, "phm::adapter_parameters");
  CHECK_THROWS_WITH(phm::adapter_parameters(768, c), doctest::Contains("n = 5 to divide the hidden size 768 and the bottleneck 48"));
  phm::PhmRule<double> none;
  WEFT_PHM_CHECK_FAILS(phm::HypercomplexAdapter<double>(768, c, none, rng), ConfigError, "phm::HypercomplexAdapter");
  c.phm.n = 4;
  c.reduction_factor = 1000;
  WEFT_PHM_CHECK_FAILS(phm::bottleneck(768, c), ConfigError, "phm::bottleneck");
  c.reduction_factor = 32;
  // a Compacter adapter needs the shared rule
  WEFT_PHM_CHECK_FAILS(phm::HypercomplexAdapter<double>(768, c, none, rng), ConfigError, "phm::PhmLinear");
  auto d = phm::AdapterConfig::make(phm::AdapterKind::houlsby);
  WEFT_PHM_CHECK_FAILS(phm::HypercomplexAdapter<double>(768, d, none, rng), ConfigError, "phm::HypercomplexAdapter");
  std::vector<nn::TransformerBlock<double>> blocks;
  WEFT_PHM_CHECK_FAILS(phm::add_adapters(blocks, c, rng), ConfigError, "phm::add_adapters");
  blocks.emplace_back(20, 2, 2, rng);  // 20 / 4 = 5: n = 4 does not divide the bottleneck
  c.reduction_factor = 4;
  WEFT_PHM_CHECK_FAILS(phm::add_adapters(blocks, c, rng), ConfigError, "phm::add_adapters");
  CHECK(blocks[0].mlp.layers.back().output_adapters().empty());  // nothing attached
  phm::ModelShape ms;
  ms.blocks = 0;
  WEFT_PHM_CHECK_FAILS(phm::count_parameters(ms, c), ConfigError, "phm::count_parameters");
}

TEST_CASE("phm/count: negative sizes and overflowing counts are ValueErrors; path_costs checks its extents") {
  CHECK_THROWS_WITH_AS(phm::linear_parameters(-3, 4), doctest::Contains("weft::phm::linear_parameters: "), ValueError);
  CHECK_THROWS_WITH_AS(phm::linear_parameters(index_t(1) << 40, index_t(1) << 40),
                       doctest::Contains("weft::phm::linear_parameters: "), ValueError);
  CHECK(phm::linear_parameters(768, 24) == 768 * 24 + 24);
  phm::PhmOptions o;
  o.n = index_t(1) << 22;  // its own rule: n^3 overflows
  o.shared_rule = false;
  const index_t k = index_t(1) << 22;
  CHECK_THROWS_WITH_AS(phm::phm_linear_parameters(k, k, o), doctest::Contains("weft::phm::phm_linear_parameters: "),
                       ValueError);
  o = phm::PhmOptions{};
  o.low_rank = true;
  o.rank = index_t(1) << 62;
  CHECK_THROWS_AS(phm::phm_linear_parameters(768, 24, o), ValueError);
  ops::KronDims m;
  m.rows = 8;
  m.n = 2;
  m.p = -4;
  CHECK_THROWS_WITH_AS(phm::path_costs(m, true), doctest::Contains("weft::phm::path_costs: "), ValueError);
  m.p = 4;
  CHECK_THROWS_AS(phm::path_costs(m, true, 0), ValueError);
  phm::CostModel cm;
  cm.bandwidth = 0;
  CHECK_THROWS_AS(phm::path_costs(m, true, 8, cm), ValueError);
  CHECK(phm::path_costs(m, true).factored > 0);
}

}  // namespace weft_unit_phm_adapter_test
