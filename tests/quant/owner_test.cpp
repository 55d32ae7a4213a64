// Hooks with owners in quant/ (issue 16): CgaController and OscillationTracker own the optimiser
// hooks they install. Destroying one before its optimiser and stepping is safe (the sanitizer
// build checks there is no access to the dead controller); a moved controller keeps working
// (its hooks follow it), and detach() removes the hooks.
#include <doctest/doctest.h>

#include <memory>
#include <utility>
#include <vector>

#include "quant_test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"
#include "weft/quant/cga.hpp"
#include "weft/quant/statsq.hpp"
#include "weft/quant/tracker.hpp"

namespace weft_unit_quant_owner_test {

using namespace weft;

void step(nn::Linear<float>& layer, nn::Optimizer<float>& opt, const Tensor<float>& x) {
  opt.zero_grad();
  Tape<float> t;
  t.backward(mean(square(layer(t.constant(x)) - 0.3f)));
  opt.step();
}

TEST_CASE("quant/owner: a CGA controller or tracker destroyed before its optimiser removes its hooks") {
  Rng rng(31);
  nn::Linear<float> layer(16, 8, rng);
  auto q = quant::statsq<2, float>();
  layer.add_transform(q);
  nn::Adam<float> opt(layer.parameters());
  const Tensor<float> x = test::randn<float>(Shape{8, 16}, rng);
  {
    quant::CgaOptions co;
    co.boundary_range = 0.2;
    quant::CgaController<float> cga(co);
    cga.manage(layer, q);
    cga.attach(opt);
    quant::OscillationTracker<float> tr;
    tr.track(q);
    tr.attach(opt);
    CHECK(opt.num_pre_step_hooks() == 2);
    CHECK(opt.num_post_step_hooks() == 1);
    step(layer, opt, x);
    CHECK(cga.steps() == 1);
  }
  CHECK(opt.num_pre_step_hooks() == 0);
  CHECK(opt.num_post_step_hooks() == 0);
  const Tensor<float> before = layer.weight.value().clone();
  step(layer, opt, x);  // no hook touches the dead controllers
  CHECK_FALSE(test::identical(before, layer.weight.value()));
}

TEST_CASE("quant/owner: a moved CGA controller and tracker keep working through their hooks; detach removes them") {
  Rng rng(32);
  nn::Linear<float> layer(16, 8, rng);
  auto q = quant::statsq<2, float>();
  layer.add_transform(q);
  nn::Adam<float> opt(layer.parameters());
  const Tensor<float> x = test::randn<float>(Shape{8, 16}, rng);
  quant::CgaOptions co;
  co.boundary_range = 0.2;
  auto cga = std::make_unique<quant::CgaController<float>>(co);
  cga->manage(layer, q);
  cga->attach(opt);
  auto tr = std::make_unique<quant::OscillationTracker<float>>();
  tr->track(q);
  tr->attach(opt);
  step(layer, opt, x);
  step(layer, opt, x);
  quant::CgaController<float> cga2(std::move(*cga));
  quant::OscillationTracker<float> tr2;
  tr2 = std::move(*tr);
  cga.reset();  // the moved-from objects die: the hooks must not point at them
  tr.reset();
  const std::int64_t cga_steps = cga2.steps(), tr_steps = tr2.steps();
  CHECK(cga_steps == 2);
  CHECK(tr_steps == 1);  // the first observation only initialises
  // the frozen weights keep their values through a step, as CGA promises
  step(layer, opt, x);
  CHECK(cga2.steps() == cga_steps + 1);
  CHECK(tr2.steps() == tr_steps + 1);
  const Tensor<float> before = layer.weight.value().clone();
  step(layer, opt, x);
  index_t frozen = 0, changed = 0;
  for (index_t i = 0; i < before.numel(); ++i)
    if (!cga2.trainable_mask(0)[std::size_t(i)]) {
      ++frozen;
      changed += before.flat(i) != layer.weight.value().flat(i);
    }
  CHECK(frozen > 0);
  CHECK(changed == 0);
  cga2.detach();
  tr2.detach();
  CHECK(opt.num_pre_step_hooks() == 0);
  CHECK(opt.num_post_step_hooks() == 0);
  step(layer, opt, x);
  CHECK(cga2.steps() == cga_steps + 2);
  CHECK(tr2.steps() == tr_steps + 2);
}

TEST_CASE("quant/owner: CGA finds its quantiser's input after a transform is inserted before it") {
  // a weight-stage transform added after manage() lands before the quantiser: the confidence mask
  // is computed on its output (W^3 here), not on the stored weight
  Rng rng(33);
  nn::Linear<float> layer(16, 8, rng);
  auto q = quant::statsq<2, float>();
  layer.add_transform(q);
  quant::CgaOptions co;
  co.boundary_range = 0.2;
  quant::CgaController<float> cga(co);
  cga.manage(layer, q);
  struct Cube : nn::WeightTransform<float> {  // not scale-invariant, unlike StatsQ's statistics
    std::string name() const override { return "cube"; }
    Var<float> apply(const Var<float>& w) override { return w * w * w; }
  };
  layer.add_transform(std::make_shared<Cube>());
  REQUIRE(layer.transforms()[0]->name() == "cube");
  nn::Adam<float> opt(layer.parameters());
  cga.attach(opt);
  const Tensor<float> x = test::randn<float>(Shape{8, 16}, rng);
  auto* sq = dynamic_cast<quant::StatsQuantizerBase<float>*>(layer.transforms()[1].get());
  REQUIRE(sq != nullptr);
  Tensor<float> w3 = layer.weight.value().clone();
  w3.array() = w3.array() * w3.array() * w3.array();
  std::vector<std::uint8_t> on_scaled, on_stored;
  sq->confidence_mask(w3, 0.2, on_scaled);
  sq->confidence_mask(layer.weight.value(), 0.2, on_stored);
  REQUIRE(on_scaled != on_stored);  // the two inputs give different masks
  step(layer, opt, x);
  CHECK(cga.steps() == 1);
  CHECK(cga.trainable_mask(0) == on_scaled);
}

}  // namespace weft_unit_quant_owner_test
