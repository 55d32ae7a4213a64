// Tests of weft/peft/save.hpp: PEFT adapter directories. Round trips of every adapter kind PEFT
// can represent (LoRA, rsLoRA, gaussian, PiSSA, OLoRA, BoneShared, MissMini, BoneAffine) in float
// and double into a fresh model with bit-identical outputs; PEFT's key names and config fields;
// name mapping; named sets; refusals of what PEFT cannot represent; bad files (wrong keys, shapes,
// dtypes, missing or ill-typed config fields) that leave the model untouched.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/test_util.hpp"
#include "weft/nn/attachment.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/state_dict.hpp"
#include "weft/peft/model.hpp"
#include "weft/peft/save.hpp"

namespace weft_unit_peft_save_test {

using namespace weft;
namespace fs = std::filesystem;

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

/// Moves every adapter parameter away from its initial value (as training would).
template <class T>
void perturb(const nn::Attachment<T>& rec, std::uint64_t seed) {
  Rng rng(seed);
  for (auto& p : rec.parameters()) {
    Tensor<T> d(p.shape());
    init::uniform(d, -0.3, 0.3, rng);
    p.value().array() += d.array();
  }
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return nlohmann::json::parse(s.str());
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

template <class T>
std::size_t attached_count(nn::MLP<T>& m) {
  std::size_t n = 0;
  for (auto& l : m.layers) n += l.side_paths().size() + l.transforms().size();
  return n;
}

const std::vector<index_t> kSizes = {8, 12, 12, 4};

/// Attaches with `attach` to a model of seed 7, perturbs, saves, loads into a fresh model of seed
/// 7 and checks the outputs bit for bit; returns the directory.
template <class T, class Attach>
std::string round_trip(const std::string& name, Attach attach) {
  Rng rng(7);
  nn::MLP<T> model(kSizes, rng);
  Rng arng(11);
  auto rec = attach(model, arng);
  perturb(rec, 3);
  const Tensor<T> x = inputs<T>(5, 8, 1);
  const Tensor<T> want = run(model, x);
  const std::string dir = tmp(name);
  peft::save_adapter(model, rec, dir);
  Rng rng2(7);
  nn::MLP<T> fresh(kSizes, rng2);
  Rng brng(99);
  auto back = peft::load_adapter(fresh, dir, brng);
  CHECK(back.technique() == rec.technique());
  CHECK(back.layer_names() == rec.layer_names());
  CHECK(bit_equal(run(fresh, x), want));
  return dir;
}

}  // namespace

TEST_CASE_TEMPLATE("peft/save: every adapter kind round-trips into a fresh model bit for bit", T, float, double) {
  peft::LoraOptions lo;
  lo.r = 3;
  lo.alpha = 6;
  lo.dropout = 0.1;
  SUBCASE("lora") {
    const std::string dir = round_trip<T>("lora", [&](nn::MLP<T>& m, Rng& r) { return peft::attach_lora(m, lo, r, {"layers.0", "layers.2"}); });
    const nlohmann::json c = read_json(dir + "/adapter_config.json");
    CHECK(c["peft_type"] == "LORA");
    CHECK(c["r"] == 3);
    CHECK(c["lora_alpha"].is_number_integer());
    CHECK(c["lora_alpha"] == 6);
    CHECK(c["lora_dropout"] == 0.1);
    CHECK(c["use_rslora"] == false);
    CHECK(c["init_lora_weights"] == true);
    CHECK(c["target_modules"] == nlohmann::json::array({"layers.0", "layers.2"}));
    CHECK(c["bias"] == "none");
    CHECK(c["use_dora"] == false);
    const SafetensorsFile f = load_safetensors(dir + "/adapter_model.safetensors");
    CHECK(f.tensors().size() == 4);
    const SafetensorsInfo& a = f.info("base_model.model.layers.2.lora_A.weight");
    CHECK(a.shape == std::vector<index_t>{3, 12});
    CHECK(a.dtype == (std::is_same_v<T, float> ? SafetensorsDtype::F32 : SafetensorsDtype::F64));
    CHECK(f.info("base_model.model.layers.2.lora_B.weight").shape == std::vector<index_t>{4, 3});
    CHECK(f.metadata().at("format") == "pt");
  }
  SUBCASE("rslora") {
    lo.rslora = true;
    const std::string dir = round_trip<T>("rslora", [&](nn::MLP<T>& m, Rng& r) { return peft::attach_lora(m, lo, r); });
    CHECK(read_json(dir + "/adapter_config.json")["use_rslora"] == true);
  }
  SUBCASE("gaussian") {
    lo.init = peft::LoraInit::gaussian;
    const std::string dir = round_trip<T>("gauss", [&](nn::MLP<T>& m, Rng& r) { return peft::attach_lora(m, lo, r, {"layers.1"}); });
    CHECK(read_json(dir + "/adapter_config.json")["init_lora_weights"] == "gaussian");
  }
  SUBCASE("pissa (the base is rewritten on load as at attach)") {
    lo.init = peft::LoraInit::pissa;
    lo.dropout = 0;
    const std::string dir = round_trip<T>("pissa", [&](nn::MLP<T>& m, Rng& r) { return peft::attach_lora(m, lo, r); });
    CHECK(read_json(dir + "/adapter_config.json")["init_lora_weights"] == "pissa");
  }
  SUBCASE("pissa_niter") {
    lo.init = peft::LoraInit::pissa;
    lo.pissa_niter = 2;
    lo.dropout = 0;
    // randomised SVD: the load draws from its own rng, so only the config is compared
    Rng rng(7);
    nn::MLP<T> model(kSizes, rng);
    auto rec = peft::attach_lora(model, lo, rng);
    const std::string dir = tmp("pissa_niter");
    peft::save_adapter(model, rec, dir);
    CHECK(read_json(dir + "/adapter_config.json")["init_lora_weights"] == "pissa_niter_2");
    CHECK(peft::read_adapter_config(dir).init == "pissa_niter_2");
  }
  SUBCASE("olora") {
    lo.init = peft::LoraInit::olora;
    lo.dropout = 0;
    round_trip<T>("olora", [&](nn::MLP<T>& m, Rng& r) { return peft::attach_lora(m, lo, r, {"layers.0"}); });
  }
  SUBCASE("bone_shared (MiSS balance)") {
    peft::BoneOptions bo;
    bo.r = 5;  // does not divide in = 8 / 12: the last shard is truncated as in PEFT
    const std::string dir = round_trip<T>("miss", [&](nn::MLP<T>& m, Rng& r) { return peft::attach_bone_shared(m, bo, r); });
    const nlohmann::json c = read_json(dir + "/adapter_config.json");
    CHECK(c["peft_type"] == "MISS");
    CHECK(c["r"] == 5);
    CHECK(c["init_weights"] == true);
    const SafetensorsFile f = load_safetensors(dir + "/adapter_model.safetensors");
    CHECK(f.info("base_model.model.layers.1.miss_block").shape == std::vector<index_t>{5, 12});
  }
  SUBCASE("miss_mini") {
    peft::BoneOptions bo;
    bo.r = 4;
    bo.mini_r = 2;
    const std::string dir = round_trip<T>("mini", [&](nn::MLP<T>& m, Rng& r) { return peft::attach_miss_mini(m, bo, r); });
    const nlohmann::json c = read_json(dir + "/adapter_config.json");
    CHECK(c["init_weights"] == "mini");
    CHECK(c["mini_r"] == 2);
    CHECK(load_safetensors(dir + "/adapter_model.safetensors").info("base_model.model.layers.0.miss_block").shape ==
          std::vector<index_t>{4, 2});
  }
  SUBCASE("bone_affine (MiSS bat)") {
    peft::BoneOptions bo;
    bo.r = 4;
    const std::string dir = round_trip<T>("bat", [&](nn::MLP<T>& m, Rng& r) { return peft::attach_bone_affine(m, bo, r); });
    CHECK(read_json(dir + "/adapter_config.json")["init_weights"] == "bat");
    CHECK(load_safetensors(dir + "/adapter_model.safetensors").info("base_model.model.layers.1.miss_block").shape ==
          std::vector<index_t>{3, 4, 4});
  }
}

TEST_CASE("peft/save: the state dict's name mapping gives PyTorch module paths") {
  // weft MLP layers.k <-> torch Sequential index 2k (Linear, ReLU, Linear, ...)
  auto to_torch = [](const std::string& n) {
    const std::size_t dot = n.find('.', 7);
    return std::to_string(2 * std::stoi(n.substr(7, dot - 7))) + n.substr(dot);
  };
  auto to_weft = [](const std::string& n) {
    const std::size_t dot = n.find('.');
    return "layers." + std::to_string(std::stoi(n.substr(0, dot)) / 2) + n.substr(dot);
  };
  Rng rng(7);
  nn::MLP<float> model(kSizes, rng);
  peft::LoraOptions lo;
  lo.r = 2;
  auto rec = peft::attach_lora(model, lo, rng);
  perturb(rec, 5);
  const std::string dir = tmp("mapped");
  peft::AdapterSaveOptions so;
  so.map_name = to_torch;
  so.base_model_name_or_path = "torch-mlp";
  peft::save_adapter(model, rec, dir, so);
  const SafetensorsFile f = load_safetensors(dir + "/adapter_model.safetensors");
  for (const char* k : {"base_model.model.0.lora_A.weight", "base_model.model.2.lora_B.weight", "base_model.model.4.lora_A.weight"})
    CHECK(f.contains(k));
  const nlohmann::json c = read_json(dir + "/adapter_config.json");
  CHECK(c["target_modules"] == nlohmann::json::array({"0", "2", "4"}));
  CHECK(c["base_model_name_or_path"] == "torch-mlp");
  const Tensor<float> x = inputs<float>(4, 8, 2);
  Rng rng2(7);
  nn::MLP<float> fresh(kSizes, rng2);
  peft::AdapterLoadOptions lopt;
  lopt.map_name = to_weft;
  peft::load_adapter(fresh, dir, rng2, lopt);
  CHECK(bit_equal(run(fresh, x), run(model, x)));
  // without the mapping, "0" is no Linear of the model: IoError naming it, model unchanged
  Rng rng3(7);
  nn::MLP<float> other(kSizes, rng3);
  CHECK_THROWS_WITH_AS(peft::load_adapter(other, dir, rng3), doctest::Contains("module '0'"), IoError);
  CHECK(attached_count(other) == 0);
  // a mapping that does not end in .weight is a ConfigError
  peft::AdapterSaveOptions bad;
  bad.map_name = [](const std::string& n) { return n + "_x"; };
  CHECK_THROWS_WITH_AS(peft::save_adapter(model, rec, tmp("badmap"), bad), doctest::Contains("ending in '.weight'"), ConfigError);
  peft::AdapterSaveOptions latin1;
  latin1.base_model_name_or_path = "caf\xe9";
  CHECK_THROWS_WITH_AS(peft::save_adapter(model, rec, tmp("latin1"), latin1), doctest::Contains("UTF-8"), ValueError);
}

TEST_CASE("peft/save: a named set saves each adapter as PEFT does (default in the root)") {
  Rng rng(7);
  nn::MLP<double> model(kSizes, rng);
  peft::LoraOptions lo;
  lo.r = 2;
  peft::BoneOptions bo;
  bo.r = 4;
  nn::Attachments<double> set;
  set.add("default", peft::attach_lora(model, lo, rng, {"layers.0"}));
  set.add("miss", peft::attach_bone_shared(model, bo, rng, {"layers.1"}));
  perturb(set.get("default"), 1);
  perturb(set.get("miss"), 2);
  const std::string dir = tmp("named");
  peft::save_adapters(model, set, dir);
  CHECK(peft::read_adapter_config(dir).peft_type == "LORA");
  CHECK(peft::read_adapter_config(dir + "/miss").peft_type == "MISS");
  const Tensor<double> x = inputs<double>(3, 8, 4);
  const Tensor<double> want = run(model, x);
  Rng rng2(7);
  nn::MLP<double> fresh(kSizes, rng2);
  nn::Attachments<double> back;
  back.add("default", peft::load_adapter(fresh, dir, rng2));
  back.add("miss", peft::load_adapter(fresh, dir + "/miss", rng2));
  CHECK(bit_equal(run(fresh, x), want));
}

TEST_CASE("peft/save: what PEFT cannot represent is refused before anything is written") {
  Rng rng(7);
  nn::MLP<float> model(kSizes, rng);
  const std::string dir = tmp("refused");
  SUBCASE("a record that is no adapter") {
    nn::Attachment<float> rec("statsq");
    CHECK_THROWS_WITH_AS(peft::save_adapter(model, rec, dir), doctest::Contains("not a PEFT adapter"), ConfigError);
  }
  SUBCASE("a PHM adapter") {
    nn::Attachment<float> rec("phm_adapter");
    CHECK_THROWS_WITH_AS(peft::save_adapter(model, rec, dir), doctest::Contains("no PEFT type"), ConfigError);
  }
  SUBCASE("a record of another model") {
    nn::MLP<float> other(kSizes, rng);
    auto rec = peft::attach_lora(other, peft::LoraOptions{2}, rng);
    CHECK_THROWS_WITH_AS(peft::save_adapter(model, rec, dir), doctest::Contains("not one of its Linears"), ConfigError);
  }
  SUBCASE("a detached record") {
    auto rec = peft::attach_lora(model, peft::LoraOptions{2}, rng);
    rec.detach();
    CHECK_THROWS_WITH_AS(peft::save_adapter(model, rec, dir), doctest::Contains("detached"), ConfigError);
  }
  CHECK(!fs::exists(dir + "/adapter_model.safetensors"));
  CHECK(!fs::exists(dir + "/adapter_config.json"));
}

TEST_CASE("peft/save: bad adapter files are refused, the model untouched") {
  Rng rng(7);
  nn::MLP<float> model(kSizes, rng);
  peft::LoraOptions lo;
  lo.r = 2;
  lo.alpha = 4;
  auto rec = peft::attach_lora(model, lo, rng, {"layers.0", "layers.1"});
  const std::string dir = tmp("bad");
  peft::save_adapter(model, rec, dir);
  const std::string cfg = dir + "/adapter_config.json", st = dir + "/adapter_model.safetensors";
  const nlohmann::json good = read_json(cfg);
  Rng rng2(7);
  nn::MLP<float> fresh(kSizes, rng2);
  const Tensor<float> x = inputs<float>(3, 8, 4);
  const Tensor<float> base = run(fresh, x);
  auto expect_fail = [&](const std::string& what) {
    CHECK_THROWS_WITH(peft::load_adapter(fresh, dir, rng2), doctest::Contains(what.c_str()));
    CHECK(attached_count(fresh) == 0);
    CHECK(bit_equal(run(fresh, x), base));
  };
  auto with_config = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json c = good;
    edit(c);
    write_text(cfg, c.dump());
  };
  SUBCASE("missing fields") {
    for (const char* k : {"peft_type", "r", "lora_alpha", "target_modules"}) {
      with_config([&](nlohmann::json& c) { c.erase(k); });
      expect_fail(std::string("missing field '") + k + "'");
    }
  }
  SUBCASE("ill-typed or unsupported fields") {
    with_config([](nlohmann::json& c) { c["r"] = "2"; });
    expect_fail("expected an integer r");
    with_config([](nlohmann::json& c) { c["r"] = 0; });
    expect_fail("expected an integer r >= 1");
    with_config([](nlohmann::json& c) { c["lora_alpha"] = -1; });
    expect_fail("lora_alpha > 0");
    with_config([](nlohmann::json& c) { c["use_dora"] = true; });
    expect_fail("no DoRA");
    with_config([](nlohmann::json& c) { c["fan_in_fan_out"] = true; });
    expect_fail("fan_in_fan_out");
    with_config([](nlohmann::json& c) { c["bias"] = "all"; });
    expect_fail("bias \"none\"");
    with_config([](nlohmann::json& c) { c["rank_pattern"] = {{"layers.0", 4}}; });
    expect_fail("rank_pattern");
    with_config([](nlohmann::json& c) { c["peft_type"] = "IA3"; });
    expect_fail("'IA3'");
    with_config([](nlohmann::json& c) { c["init_lora_weights"] = "loftq"; });
    expect_fail("'loftq'");
    with_config([](nlohmann::json& c) { c["lora_dropout"] = 1.5; });
    expect_fail("lora_dropout");
    with_config([](nlohmann::json& c) { c["target_modules"] = nlohmann::json::array({"layers.2"}); });
    expect_fail("not among the config's target_modules");
    write_text(cfg, "{\"peft_type\": \"LORA\",");
    expect_fail("invalid JSON");
    write_text(cfg, "[1, 2]");
    expect_fail("expected a JSON object");
  }
  SUBCASE("a config whose r does not match the tensors") {
    with_config([](nlohmann::json& c) { c["r"] = 3; });
    expect_fail("expected shape (3, 8)");
  }
  SUBCASE("wrong keys, shapes and dtypes") {
    const SafetensorsFile f = load_safetensors(st);
    auto rewrite = [&](const std::string& drop, std::vector<SafetensorsEntry> extra) {
      std::vector<SafetensorsEntry> es = std::move(extra);
      for (const auto& in : f.tensors())
        if (in.name != drop) es.push_back(safetensors_entry(in.name, f.tensor<float>(in.name)));
      save_safetensors(st, es);
    };
    rewrite("", {safetensors_entry("base_model.model.layers.0.lora_C.weight", Tensor<float>(Shape{2, 8}))});
    expect_fail("unexpected tensor 'base_model.model.layers.0.lora_C.weight'");
    rewrite("base_model.model.layers.1.lora_B.weight", {});
    expect_fail("expected both lora_A and lora_B for module 'layers.1'");
    rewrite("base_model.model.layers.1.lora_B.weight",
            {safetensors_entry("base_model.model.layers.1.lora_B.weight", Tensor<float>(Shape{12, 3}))});
    expect_fail("expected shape (12, 2)");
    rewrite("base_model.model.layers.1.lora_B.weight",
            {safetensors_entry("base_model.model.layers.1.lora_B.weight", std::vector<std::int64_t>(24), {12, 2},
                               SafetensorsDtype::I32)});
    expect_fail("expected a floating-point tensor");
    rewrite("", {safetensors_entry("base_model.model.layers.9.lora_A.weight", Tensor<float>(Shape{2, 8}))});
    with_config([](nlohmann::json& c) { c["target_modules"] = nlohmann::json::array({"layers.0", "layers.1", "layers.9"}); });
    expect_fail("module 'layers.9'");
  }
  SUBCASE("missing files") {
    fs::remove(cfg);
    expect_fail("cannot open");
  }
}

}  // namespace weft_unit_peft_save_test
