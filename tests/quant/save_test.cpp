// Tests of weft/quant/save.hpp (quantised models as codes + steps) and weft/prune/save.hpp (masks):
// a QAT-trained StatsQ / LSQ model, a compander under StatsQ and a pruned + quantised model reload
// into fresh plain models with bit-identical outputs, in float and double; the codes come back
// equal to export_weights'; masks round-trip as packed bits and U8; the compander's (a, b) and
// Compacter's shared PHM rule round-trip through the state dict; bad files are refused with the
// model untouched.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/state_dict.hpp"
#include "weft/phm/adapter.hpp"
#include "weft/prune/save.hpp"
#include "weft/quant/activation.hpp"
#include "weft/quant/save.hpp"
#include "weft/reparam/attach.hpp"

namespace weft_unit_quant_save_test {

using namespace weft;

namespace {

std::string tmp(const std::string& name) { return weft::test::temp_path(name); }

template <class T>
Tensor<T> inputs(index_t rows, index_t cols, std::uint64_t seed) {
  Rng rng(seed);
  Tensor<T> x(Shape{rows, cols});
  init::uniform(x, -1.0, 1.0, rng);
  return x;
}

template <class T>
Tensor<T> run(nn::MLP<T>& m, const Tensor<T>& x) {
  Tape<T> tape;
  no_grad ng;
  return m(tape.constant(x)).value().clone();
}

template <class T>
bool bit_equal(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.numel())) == 0;
}

/// A few Adam steps on a random regression target (QAT: the float weights and LSQ scales move).
template <class T>
void train(nn::MLP<T>& m, int steps) {
  const Tensor<T> x = inputs<T>(16, 8, 21), y = inputs<T>(16, 4, 22);
  nn::AdamOptions ao;
  ao.lr = 1e-2;
  nn::Adam<T> opt(m.parameters(), ao);
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Tape<T> t;
    Var<T> d = m(t.constant(x)) - t.constant(y);
    t.backward(sum(d * d));
    opt.step();
  }
}

const std::vector<index_t> kSizes = {8, 16, 12, 4};

prune::Mask half_mask(index_t rows, index_t cols, std::uint64_t seed) {
  Rng rng(seed);
  prune::Mask m(rows, cols);
  for (auto& k : m.keep) k = rng.uniform() < 0.5 ? 0 : 1;
  return m;
}

}  // namespace

TEST_CASE_TEMPLATE("quant/save: a QAT-trained model reloads from its codes bit for bit", T, float, double) {
  for (int kind = 0; kind < 3; ++kind) {
    CAPTURE(kind);
    Rng rng(3);
    nn::MLP<T> model(kSizes, rng);
    quant::QuantAttachment<T> att;
    if (kind == 0) {
      quant::StatsQOptions so;
      so.bits = 2;
      att = quant::quantize_linears(model, quant::statsq_factory<T>(so));
    } else {
      quant::LsqOptions lo;
      lo.bits = kind == 1 ? 3 : 8;
      lo.is_signed = kind == 1;  // kind 2: 8-bit unsigned codes up to 255 are written as I16
      att = quant::quantize_linears(model, quant::lsq_factory<T>(lo));
    }
    train(model, 5);
    const Tensor<T> x = inputs<T>(6, 8, 1);
    const Tensor<T> want = run(model, x);
    const std::string path = tmp("q.safetensors");
    quant::save_quantized(model, att, path);
    const SafetensorsFile f = load_safetensors(path);
    CHECK(f.info("layers.1.weight.codes").dtype == (kind == 2 ? SafetensorsDtype::I16 : SafetensorsDtype::I8));
    CHECK(!f.contains("layers.1.weight"));
    CHECK(f.contains("layers.1.bias"));
    Rng rng2(99);
    nn::MLP<T> fresh(kSizes, rng2);  // other weights, no quantisers
    const auto rep = quant::load_quantized(fresh, path);
    CHECK(bit_equal(run(fresh, x), want));
    REQUIRE(rep.weights.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      const auto qw = quant::export_weights(att.layers[i]);
      CHECK(rep.weights[i].first == "layers." + std::to_string(i));
      CHECK(rep.weights[i].second.codes == qw.codes);
      CHECK(rep.weights[i].second.step == qw.step);
      CHECK(rep.weights[i].second.offset == qw.offset);
      CHECK(rep.weights[i].second.scheme == qw.scheme);
    }
    CHECK(rep.rest.loaded.size() == 3);  // the biases
  }
}

TEST_CASE_TEMPLATE("quant/save: compander under StatsQ: the codes hold Q(Psi(v))", T, float, double) {
  Rng rng(4);
  nn::MLP<T> model(kSizes, rng);
  reparam::CompanderOptions co;
  co.learnable = true;  // (a, b) are parameters of the model, to be folded into the codes
  auto comp = reparam::attach_compander(model, co);
  quant::StatsQOptions so;
  so.bits = 3;
  auto q = quant::quantize_linears(model, quant::statsq_factory<T>(so));
  train(model, 4);
  const Tensor<T> x = inputs<T>(5, 8, 2);
  const Tensor<T> want = run(model, x);
  const std::string path = tmp("cq.safetensors");
  quant::save_quantized(model, q, path);
  bool named = false;  // the compander's a is a model parameter under this name ...
  for (auto& np : model.named_parameters()) named = named || np.first == "layers.0.transforms.0.compander.a";
  CHECK(named);
  CHECK(!load_safetensors(path).contains("layers.0.transforms.0.compander.a"));  // ... folded into the codes
  Rng rng2(5);
  nn::MLP<T> fresh(kSizes, rng2);
  quant::load_quantized(fresh, path);
  CHECK(bit_equal(run(fresh, x), want));
}

TEST_CASE_TEMPLATE("quant/save + prune/save: a pruned and quantised model reloads bit for bit", T, float, double) {
  Rng rng(5);
  nn::MLP<T> model(kSizes, rng);
  std::vector<prune::Mask> masks;
  for (auto& l : model.layers) masks.push_back(half_mask(l.out_features(), l.in_features(), 7 + masks.size()));
  auto pruned = prune::apply_masks(model, nn::SelectorArg<T>{}, masks);
  quant::StatsQOptions so;
  so.bits = 2;
  auto q = quant::quantize_linears(model, quant::statsq_factory<T>(so));
  train(model, 4);
  const Tensor<T> x = inputs<T>(5, 8, 3);
  const Tensor<T> want = run(model, x);
  const std::string qp = tmp("pq.safetensors"), mp = tmp("pq_masks.safetensors");
  CHECK_THROWS_WITH_AS(quant::save_quantized(model, q, qp), doctest::Contains("prune::save_masks"), ConfigError);
  quant::QuantSaveOptions qo;
  qo.allow_masks_after = true;
  quant::save_quantized(model, q, qp, qo);
  prune::save_masks(pruned.weights, mp);
  Rng rng2(6);
  nn::MLP<T> fresh(kSizes, rng2);
  quant::load_quantized(fresh, qp);
  auto again = prune::load_and_apply_masks(fresh, mp);
  CHECK(again.size() == 3);
  CHECK(bit_equal(run(fresh, x), want));
  for (std::size_t i = 0; i < 3; ++i) CHECK(again[i].mask->mask().keep == masks[i].keep);
}

TEST_CASE("prune/save: masks round-trip as packed bits and U8; bad mask files are refused") {
  Rng rng(8);
  nn::MLP<float> model({8, 13, 4}, rng);  // 13 and 8 columns: a padded and a full byte
  std::vector<prune::Mask> masks{half_mask(13, 8, 1), half_mask(4, 13, 2)};
  auto pruned = prune::apply_masks(model, nn::SelectorArg<float>{}, masks);
  for (auto fmt : {prune::MaskFormat::packed_bits, prune::MaskFormat::u8}) {
    prune::MaskSaveOptions o;
    o.format = fmt;
    const std::string p = tmp("m.safetensors");
    prune::save_masks(pruned.weights, p, o);
    const SafetensorsFile f = load_safetensors(p);
    if (fmt == prune::MaskFormat::packed_bits) {
      CHECK(f.info("layers.1.weight_mask_packed").shape == std::vector<index_t>{4, 2});
      CHECK(f.metadata().at("weft.mask.layers.1.weight_mask_packed") == "13");
    } else {
      CHECK(f.info("layers.1.weight_mask").shape == std::vector<index_t>{4, 13});
    }
    const auto back = prune::load_masks(f);
    REQUIRE(back.size() == 2);
    CHECK(back[0].first == "layers.0");
    CHECK(back[0].second.keep == masks[0].keep);
    CHECK(back[1].second.keep == masks[1].keep);
  }
  const std::string bad = tmp("bad_masks.safetensors");
  auto refuse = [&](std::vector<SafetensorsEntry> es, std::map<std::string, std::string> meta, const char* what) {
    save_safetensors(bad, es, meta);
    Rng r2(8);
    nn::MLP<float> fresh({8, 13, 4}, r2);
    CHECK_THROWS_WITH_AS(prune::load_and_apply_masks(fresh, bad), doctest::Contains(what), IoError);
    CHECK(fresh.layers[0].transforms().empty());
  };
  auto u8 = [](const std::string& n, std::vector<index_t> shape, std::vector<std::int64_t> v) {
    return safetensors_entry(n, v, shape, SafetensorsDtype::U8);
  };
  refuse({u8("layers.0.weight_mask", {1, 2}, {0, 2})}, {}, "expected 0 or 1");
  refuse({u8("layers.0.weight_mask_packed", {13, 1}, std::vector<std::int64_t>(13, 255))}, {{"weft.mask.layers.0.weight_mask_packed", "7"}},
         "zero padding bits");
  refuse({u8("layers.0.weight_mask_packed", {13, 1}, std::vector<std::int64_t>(13, 1))}, {}, "column count");
  refuse({u8("layers.0.weight_mask_packed", {13, 1}, std::vector<std::int64_t>(13, 1))}, {{"weft.mask.layers.0.weight_mask_packed", "9"}},
         "expected 2 bytes per row");
  refuse({u8("layers.0.keep", {13, 8}, std::vector<std::int64_t>(104, 1))}, {}, "unexpected tensor 'layers.0.keep'");
  refuse({u8("layers.7.weight_mask", {13, 8}, std::vector<std::int64_t>(104, 1))}, {}, "names no Linear");
  refuse({safetensors_entry("layers.0.weight_mask", Tensor<float>(Shape{13, 8}))}, {}, "expected U8 or BOOL");
}

TEST_CASE("quant/save: bad quantised files are refused, the model untouched") {
  Rng rng(3);
  nn::MLP<float> model(kSizes, rng);
  quant::StatsQOptions so;
  so.bits = 2;
  auto att = quant::quantize_linears(model, quant::statsq_factory<float>(so));
  const std::string path = tmp("q.safetensors");
  quant::save_quantized(model, att, path);
  const SafetensorsFile good = load_safetensors(path);
  const std::string bad = tmp("qbad.safetensors");
  auto refuse = [&](const std::string& drop, std::vector<SafetensorsEntry> extra, std::map<std::string, std::string> meta_edit,
                    const char* what) {
    std::vector<SafetensorsEntry> es = std::move(extra);
    for (const auto& in : good.tensors()) {
      if (in.name == drop) continue;
      SafetensorsEntry e;
      e.name = in.name;
      e.dtype = in.dtype;
      e.shape = in.shape;
      e.bytes.assign(good.data(in), good.data(in) + (in.end - in.begin));
      es.push_back(std::move(e));
    }
    auto meta = good.metadata();
    for (auto& m : meta_edit) {
      if (m.second.empty()) meta.erase(m.first);
      else meta[m.first] = m.second;
    }
    save_safetensors(bad, es, meta);
    Rng r2(9);
    nn::MLP<float> fresh(kSizes, r2);
    const Tensor<float> before = fresh.layers[0].weight.value().clone();
    CHECK_THROWS_WITH(quant::load_quantized(fresh, bad), doctest::Contains(what));
    CHECK(bit_equal(fresh.layers[0].weight.value(), before));
  };
  std::vector<std::int64_t> big(16 * 8, 0);
  big[5] = 9;  // outside 2-bit codes
  refuse("layers.0.weight.codes", {safetensors_entry("layers.0.weight.codes", big, {16, 8}, SafetensorsDtype::I8)}, {},
         "2-bit codes");
  refuse("layers.0.weight.codes", {safetensors_entry("layers.0.weight.codes", std::vector<std::int64_t>(16 * 9), {16, 9}, SafetensorsDtype::I8)},
         {{"weft.quant.layers.0.weight", "{\"scheme\":\"statsq\",\"bits\":2,\"offset\":0.5,\"geometry\":[1,16,9]}"}},
         "expected shape");
  refuse("layers.0.weight.step", {safetensors_entry("layers.0.weight.step", Tensor<float>(Shape{15}))}, {}, "one step per group");
  refuse("", {}, {{"weft.quant.layers.0.weight", "{\"scheme\":\"statsq\",\"bits\":2}"}}, "expected scheme");
  refuse("", {}, {{"weft.quant.layers.0.weight", "{\"scheme\":\"statsq\",\"bits\":12,\"offset\":0.5,\"geometry\":[1,16,8]}"}},
         "bits in 1..8");
  refuse("layers.2.weight.step", {}, {}, "expected tensors 'layers.2.weight.codes' and 'layers.2.weight.step'");
  refuse("layers.1.bias", {}, {}, "missing parameter");
  refuse("", {safetensors_entry("layers.1.extra", Tensor<float>(Shape{2}))}, {}, "unexpected tensor");
}

TEST_CASE_TEMPLATE("state dicts carry the compander's (a, b) and Compacter's shared PHM rule", T, float, double) {
  const Tensor<T> x = inputs<T>(4, 8, 5);
  SUBCASE("compander (learnable a, b): attach to a fresh model, then load") {
    Rng rng(1);
    nn::MLP<T> model(kSizes, rng);
    reparam::CompanderOptions co;
    co.learnable = true;
    auto c = reparam::attach_compander(model, co);
    train(model, 4);
    CHECK(c.layers[0].compander->a() != T(co.a));  // (a, b) were trained
    const Tensor<T> want = run(model, x);
    const std::string p = tmp("comp.safetensors");
    nn::save_state_dict(model, p);
    Rng rng2(2);
    nn::MLP<T> fresh(kSizes, rng2);
    reparam::attach_compander(fresh, co);
    nn::load_state_dict(fresh, p);
    CHECK(bit_equal(run(fresh, x), want));
  }
  SUBCASE("LSQ weights with OFQ activation quantisers (scales and shifts trained)") {
    quant::ActivationQuantizerOptions ao;
    ao.bits = 4;
    ao.scale = quant::ActScale::per_tensor;
    quant::LsqOptions lo;
    lo.bits = 3;
    quant::InputQuantizerFactory<T> input = [ao](const std::string&, nn::Linear<T>& l) {
      return std::shared_ptr<nn::InputTransform<T>>(std::make_shared<quant::ActivationQuantizer<T>>(ao, l.in_features()));
    };
    Rng rng(1);
    nn::MLP<T> model(kSizes, rng);
    quant::quantize_linears(model, quant::lsq_factory<T>(lo), {}, input);
    train(model, 4);
    const Tensor<T> want = run(model, x);
    const std::string p = tmp("act.safetensors");
    nn::save_state_dict(model, p);
    Rng rng2(2);
    nn::MLP<T> fresh(kSizes, rng2);
    quant::quantize_linears(fresh, quant::lsq_factory<T>(lo), {}, input);
    // An activation quantiser initialises its scale from the first batch it sees, which would
    // overwrite a loaded scale: one forward first (any batch), then load.
    (void)run(fresh, x);
    nn::load_state_dict(fresh, p);
    CHECK(bit_equal(run(fresh, x), want));
    Rng rng3(2);  // loading before that first forward: the scale is re-initialised (documented)
    nn::MLP<T> late(kSizes, rng3);
    quant::quantize_linears(late, quant::lsq_factory<T>(lo), {}, input);
    nn::load_state_dict(late, p);
    CHECK(!bit_equal(run(late, x), want));
  }
  SUBCASE("Compacter adapters with one shared rule") {
    const std::vector<index_t> sizes = {8, 32, 32, 4};
    Rng rng(1);
    nn::MLP<T> model(sizes, rng);
    phm::AdapterConfig ac = phm::AdapterConfig::make(phm::AdapterKind::compacter);
    ac.reduction_factor = 8;
    ac.phm.n = 2;
    auto set = phm::add_adapters(model, ac, rng, {"layers.0", "layers.1"});
    train(model, 3);
    const Tensor<T> want = run(model, x);
    const std::string p = tmp("phm.safetensors");
    nn::save_state_dict(model, p);
    Rng rng2(2);
    nn::MLP<T> fresh(sizes, rng2);
    phm::add_adapters(fresh, ac, rng2, {"layers.0", "layers.1"});
    nn::load_state_dict(fresh, p);
    CHECK(bit_equal(run(fresh, x), want));
  }
}

}  // namespace weft_unit_quant_save_test
