// Tests of weft/nn/state_dict.hpp: round trips of an MLP and a TinyViT (bit-identical outputs in
// a freshly initialised model), float <-> double, strict errors that leave the model untouched,
// the non-strict report, name mapping and transposition.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/tape.hpp"
#include "weft/core/rng.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/state_dict.hpp"
#include "weft/nn/vit.hpp"

namespace weft_unit_nn_state_dict_test {

namespace fs = std::filesystem;
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

template <class T, class M>
Tensor<T> run(M& model, const Tensor<T>& x) {
  Tape<T> tape;
  return model(tape.constant(x)).value().clone();
}

template <class T>
bool bit_equal(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (index_t i = 0; i < a.numel(); ++i)
    if (std::memcmp(&a.data()[i], &b.data()[i], sizeof(T)) != 0) return false;
  return true;
}

// A deep copy of every parameter value, to check that a failed load changed nothing.
template <class T>
std::vector<Tensor<T>> snapshot(nn::Module<T>& m) {
  std::vector<Tensor<T>> out;
  for (auto& p : m.parameters()) out.push_back(p.value().clone());
  return out;
}
template <class T>
bool unchanged(nn::Module<T>& m, const std::vector<Tensor<T>>& s) {
  auto ps = m.parameters();
  if (ps.size() != s.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (!bit_equal(ps[i].value(), s[i])) return false;
  return true;
}

std::string message_of_load(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE_TEMPLATE("nn/state_dict: MLP round trip gives bit-identical outputs in a fresh model", T, float, double) {
  Rng r1(1), r2(2);
  nn::MLP<T> a({6, 9, 4}, r1), b({6, 9, 4}, r2);
  const Tensor<T> x = inputs<T>(5, 6, 3);
  REQUIRE(!bit_equal(run(a, x), run(b, x)));
  const std::string path = tmp(std::string("mlp_") + (std::is_same_v<T, float> ? "f" : "d") + ".safetensors");
  nn::SaveStateDictOptions so;
  so.metadata = {{"format", "pt"}};
  nn::save_state_dict(a, path, so);
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.info("layers.0.weight").shape == std::vector<index_t>{9, 6});  // (out, in) as PyTorch
  CHECK(f.info("layers.1.bias").dtype == (std::is_same_v<T, float> ? SafetensorsDtype::F32 : SafetensorsDtype::F64));
  nn::StateDictReport r = nn::load_state_dict(b, path);
  CHECK(r.loaded == std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"});
  CHECK(r.missing.empty());
  CHECK(r.unexpected.empty());
  CHECK(bit_equal(run(a, x), run(b, x)));
}

TEST_CASE_TEMPLATE("nn/state_dict: TinyViT round trip gives bit-identical outputs in a fresh model", T, float, double) {
  nn::ViTConfig c;
  c.dim = 16;
  c.heads = 2;
  c.depth = 2;
  Rng r1(11), r2(12);
  nn::TinyViT<T> a(c, r1), b(c, r2);
  // train-like perturbation so LayerNorm gains and biases are not at their initial values
  Rng rp(5);
  for (auto& p : a.parameters()) {
    Tensor<T> noise(p.shape());
    init::uniform(noise, -0.1, 0.1, rp);
    p.value().array() += noise.array();
  }
  const Tensor<T> x = inputs<T>(3, 64, 4);
  REQUIRE(!bit_equal(run(a, x), run(b, x)));
  const std::string path = tmp(std::string("vit_") + (std::is_same_v<T, float> ? "f" : "d") + ".safetensors");
  nn::save_state_dict(a, path);
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.tensors().size() == a.named_parameters().size());
  CHECK(f.contains("blocks.1.attn.q_proj.weight"));
  CHECK(f.contains("norm.gamma"));
  nn::StateDictReport r = nn::load_state_dict(b, f);
  CHECK(r.loaded.size() == a.named_parameters().size());
  CHECK(bit_equal(run(a, x), run(b, x)));
}

TEST_CASE("nn/state_dict: float <-> double and half-precision files") {
  Rng r1(1), r2(2), r3(3);
  nn::MLP<float> f({4, 5, 3}, r1);
  nn::MLP<double> d({4, 5, 3}, r2);
  const std::string pf = tmp("mlp_float.safetensors");
  nn::save_state_dict(f, pf);
  nn::load_state_dict(d, pf);  // F32 into double: exact
  auto fp = f.named_parameters();
  auto dp = d.named_parameters();
  for (std::size_t i = 0; i < fp.size(); ++i)
    for (index_t k = 0; k < fp[i].second.numel(); ++k) CHECK(dp[i].second.value().flat(k) == double(fp[i].second.value().flat(k)));
  // double saved as F32 and as BF16: what the file holds is the rounded value
  nn::SaveStateDictOptions so;
  so.dtype = nn::SaveStateDictOptions::Dtype::bf16;
  const std::string pb = tmp("mlp_bf16.safetensors");
  nn::save_state_dict(d, pb, so);
  CHECK(load_safetensors(pb).info("layers.0.weight").dtype == SafetensorsDtype::BF16);
  nn::MLP<float> g({4, 5, 3}, r3);
  nn::load_state_dict(g, pb);
  auto gp = g.named_parameters();
  for (std::size_t i = 0; i < gp.size(); ++i)
    for (index_t k = 0; k < gp[i].second.numel(); ++k) {
      const double v = dp[i].second.value().flat(k), w = double(gp[i].second.value().flat(k));
      CHECK(std::fabs(w - v) <= std::ldexp(std::fabs(v), -8));
      CHECK(w == double(float(w)));
    }
}

TEST_CASE("nn/state_dict: strict errors list every name and leave the model untouched") {
  Rng r1(1), r2(2);
  nn::MLP<float> small({4, 5, 3}, r1);
  const std::string p = tmp("small.safetensors");
  nn::save_state_dict(small, p);

  SUBCASE("missing and unexpected names") {
    // the shapes match; only the names of layers.1 differ
    nn::SaveStateDictOptions so;
    so.map_name = [](const std::string& n) { return n.rfind("layers.1.", 0) == 0 ? "extra." + n : n; };
    const std::string q = tmp("renamed.safetensors");
    nn::save_state_dict(small, q, so);
    nn::MLP<float> target({4, 5, 3}, r2);
    auto before = snapshot(target);
    const std::string msg = message_of_load([&] { nn::load_state_dict(target, q); });
    CHECK(msg.find("weft::nn::load_state_dict: strict load from " + q + " failed, the module is unchanged") == 0);
    CHECK(msg.find("2 missing parameter(s) ['layers.1.weight', 'layers.1.bias']") != std::string::npos);
    CHECK(msg.find("2 unexpected tensor(s) ['extra.layers.1.bias', 'extra.layers.1.weight']") != std::string::npos);
    CHECK_THROWS_AS(nn::load_state_dict(target, q), IoError);
    CHECK(unchanged(target, before));
  }
  SUBCASE("shape mismatch, in strict and non-strict mode") {
    nn::MLP<float> wide({4, 6, 3}, r2);
    auto before = snapshot(wide);
    const std::string msg = message_of_load([&] { nn::load_state_dict(wide, p); });
    CHECK(msg.find("weft::nn::load_state_dict: expected shape (6) for parameter 'layers.0.bias', got (5) from tensor 'layers.0.bias' of " + p) == 0);
    CHECK_THROWS_AS(nn::load_state_dict(wide, p), ShapeError);
    nn::LoadStateDictOptions lo;
    lo.strict = false;
    CHECK_THROWS_AS(nn::load_state_dict(wide, p, lo), ShapeError);
    CHECK(unchanged(wide, before));
  }
  SUBCASE("an integer tensor for a parameter") {
    std::vector<SafetensorsEntry> e = nn::state_dict_entries(small);
    e[0] = safetensors_entry("layers.0.weight", std::vector<std::int64_t>(20, 1), {5, 4}, SafetensorsDtype::I32);
    const std::string q = tmp("int.safetensors");
    save_safetensors(q, e);
    nn::MLP<float> t({4, 5, 3}, r2);
    auto before = snapshot(t);
    CHECK_THROWS_WITH_AS(nn::load_state_dict(t, q), doctest::Contains("expected a floating-point tensor for parameter 'layers.0.weight', got I32"), IoError);
    CHECK(unchanged(t, before));
  }
  SUBCASE("two file tensors mapped to one parameter") {
    nn::MLP<float> t({4, 5, 3}, r2);
    auto before = snapshot(t);
    nn::LoadStateDictOptions lo;
    lo.map_name = [](const std::string& n) { return n == "layers.1.bias" ? std::string("layers.0.bias") : n; };
    lo.strict = false;
    CHECK_THROWS_WITH_AS(nn::load_state_dict(t, p, lo), doctest::Contains("both map to the parameter 'layers.0.bias'"), IoError);
    CHECK(unchanged(t, before));
  }
  SUBCASE("a corrupt file") {
    nn::MLP<float> t({4, 5, 3}, r2);
    auto before = snapshot(t);
    CHECK_THROWS_AS(nn::load_state_dict(t, tmp("does_not_exist.safetensors")), IoError);
    CHECK(unchanged(t, before));
  }
}

TEST_CASE("nn/state_dict: non-strict load reports missing, unexpected, loaded and skipped names") {
  Rng r1(1), r2(2);
  nn::MLP<double> src({3, 4, 2}, r1);
  std::vector<SafetensorsEntry> e = nn::state_dict_entries(src);
  e.erase(e.begin() + 3);  // drop layers.1.bias
  e.push_back(safetensors_entry("running_mean", Tensor<double>::ones(Shape{4})));
  e.push_back(safetensors_entry("num_batches_tracked", std::vector<std::int64_t>{7}, {}, SafetensorsDtype::I64));
  const std::string p = tmp("partial.safetensors");
  save_safetensors(p, e);
  nn::MLP<double> dst({3, 4, 2}, r2);
  const Tensor<double> kept = dst.layers[1].bias.value().clone();
  nn::LoadStateDictOptions lo;
  lo.strict = false;
  lo.map_name = [](const std::string& n) { return n == "num_batches_tracked" ? std::string() : n; };
  nn::StateDictReport r = nn::load_state_dict(dst, p, lo);
  CHECK(r.missing == std::vector<std::string>{"layers.1.bias"});
  CHECK(r.unexpected == std::vector<std::string>{"running_mean"});
  CHECK(r.skipped == std::vector<std::string>{"num_batches_tracked"});
  CHECK(r.loaded.size() == 3);
  CHECK(bit_equal(dst.layers[0].weight.value(), src.layers[0].weight.value()));
  CHECK(bit_equal(dst.layers[1].weight.value(), src.layers[1].weight.value()));
  CHECK(bit_equal(dst.layers[1].bias.value(), kept));
  // the same file in strict mode names both problems
  nn::MLP<double> strict_dst({3, 4, 2}, r2);
  lo.strict = true;
  CHECK_THROWS_WITH_AS(nn::load_state_dict(strict_dst, p, lo), doctest::Contains("1 missing parameter(s) ['layers.1.bias'], 1 unexpected tensor(s) ['running_mean']"), IoError);
}

TEST_CASE("nn/state_dict: name mapping loads a PyTorch-style nn.Sequential state dict, and transposition") {
  // torch.nn.Sequential(Linear(3, 4), ReLU(), Linear(4, 2)): keys 0.weight, 0.bias, 2.weight, 2.bias
  Rng r1(1), r2(2);
  nn::MLP<float> src({3, 4, 2}, r1);
  nn::SaveStateDictOptions so;
  so.map_name = [](const std::string& n) {  // weft -> torch: layers.k.* -> (2k).*
    const std::size_t dot = n.find('.', 7);
    return std::to_string(2 * std::stoi(n.substr(7, dot - 7))) + n.substr(dot);
  };
  const std::string p = tmp("torch_names.safetensors");
  nn::save_state_dict(src, p, so);
  SafetensorsFile f = load_safetensors(p);
  CHECK(f.contains("0.weight"));
  CHECK(f.contains("2.bias"));
  nn::MLP<float> dst({3, 4, 2}, r2);
  CHECK_THROWS_AS(nn::load_state_dict(dst, f), IoError);  // strict: the names do not match
  nn::LoadStateDictOptions lo;
  lo.map_name = [](const std::string& n) {  // torch -> weft
    const std::size_t dot = n.find('.');
    return "layers." + std::to_string(std::stoi(n.substr(0, dot)) / 2) + n.substr(dot);
  };
  nn::StateDictReport r = nn::load_state_dict(dst, f, lo);
  CHECK(r.loaded.size() == 4);
  const Tensor<float> x = inputs<float>(4, 3, 8);
  CHECK(bit_equal(run(src, x), run(dst, x)));

  // a Keras/Flax-style file stores kernels as (in, out): transpose on load
  std::vector<SafetensorsEntry> e;
  for (auto& np : src.named_parameters()) {
    const Tensor<float>& v = np.second.value();
    e.push_back(safetensors_entry(np.first, v.rank() == 2 ? v.transpose() : v));
  }
  const std::string q = tmp("kernels_in_out.safetensors");
  save_safetensors(q, e);
  nn::MLP<float> t({3, 4, 2}, r2);
  CHECK_THROWS_WITH_AS(nn::load_state_dict(t, q), doctest::Contains("expected shape (4, 3) for parameter 'layers.0.weight', got (3, 4)"), ShapeError);
  nn::LoadStateDictOptions tr;
  tr.transpose = [](const std::string& n) { return n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0; };
  nn::load_state_dict(t, q, tr);
  CHECK(bit_equal(run(src, x), run(t, x)));
}

}  // namespace weft_unit_nn_state_dict_test
