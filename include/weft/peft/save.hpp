// weft/peft/save.hpp - PEFT-compatible adapter files: save_adapter / load_adapter write and read
// what Hugging Face PEFT's save_pretrained / from_pretrained do, a directory with
//   adapter_model.safetensors   tensors "base_model.model.<module path>.<suffix>"
//   adapter_config.json         the adapter's configuration (PEFT's field names)
// for the adapters PEFT can represent:
//   weft                      PEFT peft_type   tensors (shape)                          init field
//   Lora (lora, rsLoRA)       LORA             lora_A.weight (r, in), lora_B.weight     init_lora_weights true /
//                                              (out, r)                                 "gaussian" / false
//   Lora (pissa, olora)       LORA             the same                                 "pissa", "pissa_niter_K", "olora"
//   BoneShared                MISS             miss_block (r, out)                      init_weights true (false: random)
//   MissMini                  MISS             miss_block (r, mini_r)                   init_weights "mini"
//   BoneAffine                MISS             miss_block (out / r, r, r)               init_weights "bat"
// The layouts are PEFT's own: Linear weights are (out, in) in both (no transposition), LoRA's
// A and B are torch Linear weights, and weft's Bone/MiSS parameters have PEFT's shapes and index
// order (peft/bone.hpp). Loading also accepts PEFT's older peft_type "BONE" (tensor "bone_block",
// init_weights true or "bat"). The scaling is not stored: PEFT recomputes it from the config,
// lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora, as weft does.
//
//   peft::save_adapter(model, lora, "out/adapter");                 // the record attach_lora returned
//   auto back = peft::load_adapter(fresh_model, "out/adapter", rng); // attaches, then loads
//
// Module paths: the hook is the state dict's (nn/state_dict.hpp): options.map_name maps parameter
// names (weft -> file when saving, file -> weft when loading) and is applied to "<module>.weight",
// so the lambda that renames a base model's state dict for PyTorch renames its adapters too. The
// result must end in ".weight"; "" leaves the layer out (saving) or skips it (loading).
//
// What PEFT cannot represent is refused with a ConfigError naming it, before anything is written:
// a record that is no adapter (quantisers, masks, the compander), PHM / Compacter adapters (no
// PEFT type), two adapters of one record on one layer, and LoRA layers whose r, alpha, rsLoRA,
// dropout or init differ (weft writes no rank_pattern / alpha_pattern). Loading refuses what
// weft cannot build: use_dora, fan_in_fan_out, bias other than "none", modules_to_save, non-empty
// rank_pattern / alpha_pattern, an unknown peft_type or init, missing or ill-typed fields
// (IoError naming the field and file); tensor names, shapes and dtypes are checked against the
// model before it changes (IoError / ShapeError naming the tensor). PiSSA and OLoRA load as PEFT
// loads them: the adapter is attached with its init (which rewrites the base into its residual
// from the base weights of the model at hand, so they must be the pretrained ones), then the
// trained factors are loaded.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "weft/core/io/safetensors.hpp"
#include "weft/nn/attachment.hpp"
#include "weft/nn/state_dict.hpp"
#include "weft/peft/model.hpp"

WEFT_NAMESPACE_BEGIN
namespace peft {

/// Options of save_adapter.
struct AdapterSaveOptions {
  /// weft parameter name -> file name, applied to "<layer>.weight" (see the file comment).
  std::function<std::string(const std::string&)> map_name;
  /// native: F32 for a float model, F64 for a double one; or f32 / f64 / f16 / bf16.
  nn::SaveStateDictOptions::Dtype dtype = nn::SaveStateDictOptions::Dtype::native;
  std::string base_model_name_or_path;  ///< written to the config (null when empty)
};

/// Options of load_adapter.
struct AdapterLoadOptions {
  /// file name -> weft parameter name, applied to "<module>.weight" (see the file comment).
  std::function<std::string(const std::string&)> map_name;
};

/// adapter_config.json as weft reads it (PEFT's names; only what weft uses).
struct PeftConfig {
  std::string peft_type;                    ///< "LORA", "MISS" or "BONE"
  index_t r = 0;
  double lora_alpha = 0;                    ///< LORA
  bool use_rslora = false;                  ///< LORA
  double dropout = 0;                       ///< lora_dropout / miss_dropout / bone_dropout
  std::string init = "true";                ///< init_lora_weights / init_weights as text: "true", "false", "gaussian", ...
  index_t mini_r = 1;                       ///< MISS "mini"
  std::vector<std::string> target_modules;  ///< a list (empty when a regex string was given)
  std::string target_regex;                 ///< target_modules given as one string
};

namespace detail {

inline const char* adapter_tensor_suffix(const std::string& peft_type) {
  return peft_type == "BONE" ? "bone_block" : "miss_block";
}

/// The module path of weft layer `layer` in the file (map_name on "<layer>.weight"); "" to leave out.
inline std::string map_module(const std::function<std::string(const std::string&)>& map, const std::string& layer,
                              const char* fn, const char* direction) {
  if (!map) return layer;
  const std::string in = layer.empty() ? std::string("weight") : layer + ".weight";
  const std::string out = map(in);
  if (out.empty()) return out;
  const std::string suf = ".weight";
  WEFT_CHECK(out.size() > suf.size() && out.compare(out.size() - suf.size(), suf.size(), suf) == 0, config, fn,
             "expected map_name to send '", in, "' (", direction, ") to a name ending in '.weight', got '", out, "'");
  return out.substr(0, out.size() - suf.size());
}

/// One adapter of a record, with the typed object the record knows (no look-up by type: the
/// record's technique says what its attach function created, and the object's name confirms it).
template <class T>
struct SavedAdapter {
  std::string layer;
  const Lora<T>* lora = nullptr;
  const BoneShared<T>* shared = nullptr;
  const MissMini<T>* mini = nullptr;
  const BoneAffine<T>* affine = nullptr;
};

template <class T>
std::vector<SavedAdapter<T>> typed_adapters(const nn::Attachment<T>& rec, const char* fn) {
  const std::string& tech = rec.technique();
  const bool lora = tech == "lora" || tech == "pissa" || tech == "olora";
  WEFT_CHECK(lora || tech == "bone_shared" || tech == "miss_mini" || tech == "bone_affine", config, fn,
             "expected a LoRA-family or Bone/MiSS record (PEFT types LORA, MISS), got ", rec.describe(),
             tech == "phm_adapter" || tech.find("compacter") != std::string::npos || tech == "houlsby" || tech == "pfeiffer"
                 ? " (PHM / Compacter / bottleneck adapters have no PEFT type)"
                 : " (not a PEFT adapter)");
  WEFT_CHECK(rec.attached(), config, fn, "expected an attached record, got ", rec.describe(), " detached");
  WEFT_CHECK(!rec.entries().empty(), config, fn, "expected adapters in ", rec.describe(), ", got none");
  std::vector<SavedAdapter<T>> out;
  for (const auto& e : rec.entries()) {
    for (const auto& o : out)
      WEFT_CHECK(o.layer != e.layer_name, config, fn, "expected one adapter per layer, got two of ", rec.describe(),
                 " on '", e.layer_name, "' (PEFT keeps one per adapter name and layer)");
    SavedAdapter<T> s;
    s.layer = e.layer_name;
    if (tech == "bone_affine") {
      WEFT_CHECK(e.slot == nn::Slot::transform && e.transform && e.transform->name() == "bone_affine", config, fn,
                 "expected a bone_affine transform on '", e.layer_name, "', got the ", nn::to_string(e.slot), " '",
                 e.object_name(), "'");
      s.affine = static_cast<const BoneAffine<T>*>(e.transform.get());
    } else {
      WEFT_CHECK(e.slot == nn::Slot::side && e.side && e.side->name() == tech, config, fn, "expected a ", tech,
                 " side path on '", e.layer_name, "', got the ", nn::to_string(e.slot), " '", e.object_name(), "'");
      if (lora) s.lora = static_cast<const Lora<T>*>(e.side.get());
      else if (tech == "bone_shared") s.shared = static_cast<const BoneShared<T>*>(e.side.get());
      else s.mini = static_cast<const MissMini<T>*>(e.side.get());
    }
    out.push_back(s);
  }
  return out;
}

inline nlohmann::json lora_init_json(const LoraOptions& o) {
  switch (o.init) {
    case LoraInit::kaiming: return true;
    case LoraInit::gaussian: return "gaussian";
    case LoraInit::random: return false;
    case LoraInit::olora: return "olora";
    case LoraInit::pissa: return o.pissa_niter < 0 ? std::string("pissa") : "pissa_niter_" + std::to_string(o.pissa_niter);
  }
  return true;
}

inline SafetensorsDtype adapter_dtype(nn::SaveStateDictOptions::Dtype d, bool is_float) {
  using D = nn::SaveStateDictOptions::Dtype;
  if (d == D::f16) return SafetensorsDtype::F16;
  if (d == D::bf16) return SafetensorsDtype::BF16;
  if (d == D::f32 || (d == D::native && is_float)) return SafetensorsDtype::F32;
  return SafetensorsDtype::F64;
}

inline std::string read_text_file(const std::string& path, const char* fn) {
  std::ifstream f(path, std::ios::binary);
  WEFT_CHECK(f.good(), io, fn, "cannot open ", path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

inline void write_text_file(const std::string& path, const std::string& text, const char* fn) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  WEFT_CHECK(f.good(), io, fn, "cannot open ", path, " for writing");
  f << text;
  f.flush();
  WEFT_CHECK(f.good(), io, fn, "cannot write ", path);
}

/// The field `key` of the config, or nullptr when absent (or null and `null_ok`).
inline const nlohmann::json* cfg_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace detail

/// The entries of adapter_model.safetensors and the text of adapter_config.json for the adapter
/// record `rec` of `model` (see the file comment; ConfigError for what PEFT cannot represent).
template <class T>
std::pair<std::vector<SafetensorsEntry>, std::string> adapter_files(nn::Module<T>& model, const nn::Attachment<T>& rec,
                                                                    const AdapterSaveOptions& options = {}) {
  const char* fn = "peft::save_adapter";
  const auto ads = detail::typed_adapters(rec, fn);
  // every layer of the record must be a layer of this model (by identity)
  const auto lins = nn::find_linears(model);
  for (const auto& e : rec.entries()) {
    bool found = false;
    for (const auto& l : lins) found = found || (l.second == e.layer && l.first == e.layer_name);
    WEFT_CHECK(found, config, fn, "expected the layers of ", rec.describe(), " in the model, got '", e.layer_name,
               "' which is not one of its Linears (a record of another model?)");
  }
  const SafetensorsDtype dt = detail::adapter_dtype(options.dtype, std::is_same_v<T, float>);
  const std::string prefix = "base_model.model.";
  std::vector<SafetensorsEntry> entries;
  std::vector<std::string> targets;
  nlohmann::json cfg;
  const std::string tech = rec.technique();
  for (const auto& a : ads) {
    const std::string path = detail::map_module(options.map_name, a.layer, fn, "weft -> file");
    if (path.empty()) continue;
    for (const auto& t : targets)
      WEFT_CHECK(t != path, config, fn, "expected map_name to keep module paths distinct, got '", path, "' twice");
    targets.push_back(path);
    if (a.lora) {
      entries.push_back(safetensors_entry(prefix + path + ".lora_A.weight", a.lora->A().value(), dt));
      entries.push_back(safetensors_entry(prefix + path + ".lora_B.weight", a.lora->B().value(), dt));
    } else if (a.shared) {
      entries.push_back(safetensors_entry(prefix + path + ".miss_block", a.shared->M().value(), dt));
    } else if (a.mini) {
      entries.push_back(safetensors_entry(prefix + path + ".miss_block", a.mini->M0().value(), dt));
    } else {
      entries.push_back(safetensors_entry(prefix + path + ".miss_block", a.affine->B().value(), dt));
    }
  }
  WEFT_CHECK(!targets.empty(), config, fn, "expected at least one layer of ", rec.describe(),
             " kept by map_name, got none");
  std::sort(targets.begin(), targets.end());
  const auto& first = ads.front();
  if (first.lora) {
    const LoraOptions& o = first.lora->options();
    for (const auto& a : ads) {
      const LoraOptions& p = a.lora->options();
      WEFT_CHECK(p.r == o.r && p.alpha == o.alpha && p.rslora == o.rslora && p.dropout == o.dropout && p.init == o.init &&
                     p.pissa_niter == o.pissa_niter,
                 config, fn, "expected one r, alpha, rsLoRA, dropout and init for every layer of ", rec.describe(),
                 ", got r = ", p.r, ", alpha = ", p.alpha, " on '", a.layer, "' against r = ", o.r, ", alpha = ", o.alpha,
                 " on '", first.layer, "' (weft writes no PEFT rank_pattern / alpha_pattern)");
    }
    cfg["peft_type"] = "LORA";
    cfg["r"] = o.r;
    // an integral alpha as an integer, as PEFT's LoraConfig (lora_alpha: int) writes it
    if (o.alpha == std::floor(o.alpha) && std::fabs(o.alpha) < 9.0e15) cfg["lora_alpha"] = std::int64_t(o.alpha);
    else cfg["lora_alpha"] = o.alpha;
    cfg["lora_dropout"] = o.dropout;
    cfg["use_rslora"] = o.rslora;
    cfg["init_lora_weights"] = detail::lora_init_json(o);
    cfg["fan_in_fan_out"] = false;
    cfg["use_dora"] = false;
    cfg["rank_pattern"] = nlohmann::json::object();
    cfg["alpha_pattern"] = nlohmann::json::object();
  } else {
    const index_t r = first.shared ? first.shared->rank() : first.mini ? first.mini->rank() : first.affine->rank();
    double drop = 0;
    index_t mini_r = 1;
    nlohmann::json init = true;
    if (first.shared) {
      drop = first.shared->options().dropout;
      init = first.shared->options().zero_init;
    } else if (first.mini) {
      drop = first.mini->options().dropout;
      mini_r = first.mini->mini_r();
      init = "mini";
    } else {
      init = "bat";
    }
    for (const auto& a : ads) {
      const index_t ra = a.shared ? a.shared->rank() : a.mini ? a.mini->rank() : a.affine->rank();
      const double da = a.shared ? a.shared->options().dropout : a.mini ? a.mini->options().dropout : 0.0;
      const bool za = a.shared ? a.shared->options().zero_init : true;
      const index_t ma = a.mini ? a.mini->mini_r() : 1;
      WEFT_CHECK(ra == r && da == drop && ma == mini_r && (!first.shared || za == first.shared->options().zero_init),
                 config, fn, "expected one r, dropout, mini_r and init for every layer of ", rec.describe(), ", got r = ", ra,
                 " on '", a.layer, "' against r = ", r, " on '", first.layer, "'");
    }
    cfg["peft_type"] = "MISS";
    cfg["r"] = r;
    cfg["miss_dropout"] = drop;
    cfg["mini_r"] = mini_r;
    cfg["init_weights"] = init;
  }
  // nlohmann's dump would throw its own exception on invalid UTF-8: refuse it as weft does
  for (const auto& t : targets)
    WEFT_CHECK(weft::detail::st_valid_utf8(t), value, fn, "expected UTF-8 module paths, got one of ", t.size(), " bytes");
  WEFT_CHECK(weft::detail::st_valid_utf8(options.base_model_name_or_path), value, fn,
             "expected a UTF-8 base_model_name_or_path, got one of ", options.base_model_name_or_path.size(), " bytes");
  cfg["target_modules"] = targets;
  cfg["bias"] = "none";
  cfg["modules_to_save"] = nullptr;
  cfg["task_type"] = nullptr;
  cfg["inference_mode"] = true;
  cfg["layers_to_transform"] = nullptr;
  cfg["layers_pattern"] = nullptr;
  cfg["revision"] = nullptr;
  cfg["base_model_name_or_path"] =
      options.base_model_name_or_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(options.base_model_name_or_path);
  return {std::move(entries), cfg.dump(2) + "\n"};
}

/// Writes `dir`/adapter_model.safetensors and `dir`/adapter_config.json (creating `dir`) for the
/// adapter record `rec` of `model`: the record an attach function returned or one of an
/// nn::Attachments set. Everything is checked before the first byte is written.
template <class T>
void save_adapter(nn::Module<T>& model, const nn::Attachment<T>& rec, const std::string& dir,
                  const AdapterSaveOptions& options = {}) {
  const char* fn = "peft::save_adapter";
  auto files = adapter_files(model, rec, options);
  const std::vector<std::uint8_t> bytes = safetensors_bytes(files.first, {{"format", "pt"}});
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  WEFT_CHECK(!ec, io, fn, "cannot create the directory ", dir, ": ", ec.message());
  const std::string st = (std::filesystem::path(dir) / "adapter_model.safetensors").string();
  std::ofstream f(st, std::ios::binary | std::ios::trunc);
  WEFT_CHECK(f.good(), io, fn, "cannot open ", st, " for writing");
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  f.flush();
  WEFT_CHECK(f.good(), io, fn, "cannot write ", st);
  detail::write_text_file((std::filesystem::path(dir) / "adapter_config.json").string(), files.second, fn);
}

/// Saves every adapter record of a named set as PEFT saves several adapters: the one called
/// "default" in `dir`, each other one in `dir`/<name>. Records that are no adapters (quantisers,
/// masks, companders) are left out; a PHM adapter record is a ConfigError (see save_adapter).
template <class T>
void save_adapters(nn::Module<T>& model, nn::Attachments<T>& set, const std::string& dir,
                   const AdapterSaveOptions& options = {}) {
  for (const auto& name : set.names()) {  // check every record before writing any
    const nn::Attachment<T>& r = set.get(name);
    if (r.is_adapter()) (void)adapter_files(model, r, options);
  }
  for (const auto& name : set.names()) {
    const nn::Attachment<T>& r = set.get(name);
    if (!r.is_adapter()) continue;
    save_adapter(model, r, name == "default" ? dir : (std::filesystem::path(dir) / name).string(), options);
  }
}

/// Parses the text of an adapter_config.json (`source` names it in errors); IoError for JSON that
/// does not parse, missing or ill-typed fields, and options weft cannot build (file comment).
inline PeftConfig parse_adapter_config(const std::string& text, const std::string& source = "<config>") {
  const char* fn = "peft::read_adapter_config";
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  WEFT_CHECK(!j.is_discarded(), io, fn, "invalid JSON in ", source);
  WEFT_CHECK(j.is_object(), io, fn, "expected a JSON object in ", source, ", got ", j.type_name());
  PeftConfig c;
  auto need = [&](const char* key) -> const nlohmann::json& {
    const nlohmann::json* v = detail::cfg_field(j, key);
    WEFT_CHECK(v != nullptr, io, fn, "missing field '", key, "' in ", source);
    return *v;
  };
  auto number = [&](const char* key, const nlohmann::json& v) {
    WEFT_CHECK(v.is_number(), io, fn, "expected a number for '", key, "' in ", source, ", got ", v.type_name());
    const double x = v.get<double>();
    WEFT_CHECK(std::isfinite(x), io, fn, "expected a finite '", key, "' in ", source);
    return x;
  };
  auto boolean = [&](const char* key, bool dflt) {
    const nlohmann::json* v = detail::cfg_field(j, key);
    if (!v) return dflt;
    WEFT_CHECK(v->is_boolean(), io, fn, "expected true or false for '", key, "' in ", source, ", got ", v->type_name());
    return v->get<bool>();
  };
  const nlohmann::json& pt = need("peft_type");
  WEFT_CHECK(pt.is_string(), io, fn, "expected a string for 'peft_type' in ", source, ", got ", pt.type_name());
  c.peft_type = pt.get<std::string>();
  WEFT_CHECK(c.peft_type == "LORA" || c.peft_type == "MISS" || c.peft_type == "BONE", io, fn,
             "expected peft_type LORA, MISS or BONE in ", source, ", got '", c.peft_type, "' (weft builds no other PEFT type)");
  const nlohmann::json& r = need("r");
  WEFT_CHECK(r.is_number_integer() && r.get<std::int64_t>() >= 1 && r.get<std::int64_t>() <= (std::int64_t(1) << 40), io, fn,
             "expected an integer r >= 1 in ", source, ", got ", r.dump());
  c.r = index_t(r.get<std::int64_t>());
  const nlohmann::json& tm = need("target_modules");
  if (tm.is_string()) {
    c.target_regex = tm.get<std::string>();
  } else {
    WEFT_CHECK(tm.is_array(), io, fn, "expected a list or a string for 'target_modules' in ", source, ", got ", tm.type_name());
    for (const auto& t : tm) {
      WEFT_CHECK(t.is_string(), io, fn, "expected strings in 'target_modules' of ", source, ", got ", t.type_name());
      c.target_modules.push_back(t.get<std::string>());
    }
  }
  if (const nlohmann::json* b = detail::cfg_field(j, "bias"))
    WEFT_CHECK(b->is_string() && b->get<std::string>() == "none", io, fn, "expected bias \"none\" in ", source, ", got ",
               b->dump(), " (weft adapters train no biases)");
  if (const nlohmann::json* m = detail::cfg_field(j, "modules_to_save"))
    WEFT_CHECK(m->is_array() && m->empty(), io, fn, "expected no modules_to_save in ", source, ", got ", m->dump(),
               " (weft adapter files hold adapters only)");
  auto init_text = [&](const char* key) {
    const nlohmann::json* v = detail::cfg_field(j, key);
    if (!v) return std::string("true");
    WEFT_CHECK(v->is_boolean() || v->is_string(), io, fn, "expected true, false or a string for '", key, "' in ", source,
               ", got ", v->type_name());
    return v->is_boolean() ? std::string(v->get<bool>() ? "true" : "false") : v->get<std::string>();
  };
  auto probability = [&](const char* key) {
    const nlohmann::json* v = detail::cfg_field(j, key);
    const double p = v ? number(key, *v) : 0.0;
    WEFT_CHECK(p >= 0 && p < 1, io, fn, "expected 0 <= '", key, "' < 1 in ", source, ", got ", p);
    return p;
  };
  if (c.peft_type == "LORA") {
    c.lora_alpha = number("lora_alpha", need("lora_alpha"));
    WEFT_CHECK(c.lora_alpha > 0, io, fn, "expected lora_alpha > 0 in ", source, ", got ", c.lora_alpha);
    c.use_rslora = boolean("use_rslora", false);
    c.dropout = probability("lora_dropout");
    c.init = init_text("init_lora_weights");
    WEFT_CHECK(!boolean("use_dora", false), io, fn, "expected use_dora false in ", source,
               ", got true (weft has no DoRA: the magnitude vector cannot be loaded)");
    WEFT_CHECK(!boolean("fan_in_fan_out", false), io, fn, "expected fan_in_fan_out false in ", source,
               ", got true (weft Linears store (out, in) weights)");
    for (const char* k : {"rank_pattern", "alpha_pattern"})
      if (const nlohmann::json* p = detail::cfg_field(j, k))
        WEFT_CHECK(p->is_object() && p->empty(), io, fn, "expected an empty '", k, "' in ", source, ", got ", p->dump(),
                   " (weft loads one r and alpha for every layer)");
    const std::string& i = c.init;
    const bool niter = i.rfind("pissa_niter_", 0) == 0 && i.size() > 12 && i.size() < 20 &&
                       i.find_first_not_of("0123456789", 12) == std::string::npos;
    WEFT_CHECK(i == "true" || i == "false" || i == "gaussian" || i == "pissa" || i == "olora" || niter, io, fn,
               "expected init_lora_weights true, false, \"gaussian\", \"pissa\", \"pissa_niter_K\" or \"olora\" in ", source,
               ", got '", i, "'");
  } else {
    const bool miss = c.peft_type == "MISS";
    c.dropout = probability(miss ? "miss_dropout" : "bone_dropout");
    c.init = init_text("init_weights");
    if (miss) {
      if (const nlohmann::json* m = detail::cfg_field(j, "mini_r")) {
        WEFT_CHECK(m->is_number_integer() && m->get<std::int64_t>() >= 1 && m->get<std::int64_t>() <= (std::int64_t(1) << 40),
                   io, fn, "expected an integer mini_r >= 1 in ", source, ", got ", m->dump());
        c.mini_r = index_t(m->get<std::int64_t>());
      }
    }
    WEFT_CHECK(c.init == "true" || c.init == "false" || c.init == "bat" || (miss && c.init == "mini"), io, fn,
               "expected init_weights true, false, \"bat\"", miss ? " or \"mini\"" : "", " in ", source, ", got '", c.init, "'");
  }
  return c;
}

/// Reads `dir`/adapter_config.json (or the file itself when `path` names a file).
inline PeftConfig read_adapter_config(const std::string& path) {
  const std::filesystem::path p(path);
  const std::string file = std::filesystem::is_directory(p) ? (p / "adapter_config.json").string() : path;
  return parse_adapter_config(detail::read_text_file(file, "peft::read_adapter_config"), file);
}

namespace detail {

/// A file module, its weft layer and the tensors that go to it.
template <class T>
struct LoadPlan {
  std::string module, layer;
  nn::Linear<T>* lin = nullptr;
  std::map<std::string, Tensor<T>> values;  // "A", "B", "M" (miss_block)
};

inline bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

/// Matches the file's tensors to the model's layers and checks names, dtypes and shapes.
template <class T>
std::vector<LoadPlan<T>> plan_adapter(nn::Module<T>& model, const PeftConfig& c, const SafetensorsFile& f,
                                      const AdapterLoadOptions& options, const char* fn) {
  const std::string prefix = "base_model.model.";
  const std::string block = std::string(".") + adapter_tensor_suffix(c.peft_type);
  const bool lora = c.peft_type == "LORA";
  const auto lins = nn::find_linears(model);
  std::vector<LoadPlan<T>> plans;
  for (const SafetensorsInfo& in : f.tensors()) {
    std::string module, slot;
    if (in.name.rfind(prefix, 0) == 0) {
      const std::string rest = in.name.substr(prefix.size());
      if (lora && ends_with(rest, ".lora_A.weight")) module = rest.substr(0, rest.size() - 14), slot = "A";
      else if (lora && ends_with(rest, ".lora_B.weight")) module = rest.substr(0, rest.size() - 14), slot = "B";
      else if (!lora && ends_with(rest, block)) module = rest.substr(0, rest.size() - block.size()), slot = "M";
    }
    WEFT_CHECK(!slot.empty() && !module.empty(), io, fn, "unexpected tensor '", in.name, "' in ", f.source(), " (expected ",
               prefix, "<module>", lora ? ".lora_A.weight or .lora_B.weight" : block, " for peft_type ", c.peft_type, ")");
    WEFT_CHECK(is_floating(in.dtype), io, fn, "expected a floating-point tensor '", in.name, "' in ", f.source(), ", got ",
               to_string(in.dtype));
    const std::string layer = map_module(options.map_name, module, fn, "file -> weft");
    if (layer.empty() && options.map_name) continue;
    LoadPlan<T>* p = nullptr;
    for (auto& q : plans)
      if (q.module == module) p = &q;
    if (!p) {
      nn::Linear<T>* lin = nullptr;
      for (const auto& l : lins)
        if (l.first == layer) lin = l.second;
      std::string names;
      for (const auto& l : lins) names += (names.empty() ? "'" : ", '") + l.first + "'";
      WEFT_CHECK(lin != nullptr, io, fn, "tensor '", in.name, "' of ", f.source(), " is for the module '", module,
                 "' (weft layer '", layer, "'), which is no Linear of the model; its Linears are ", names);
      plans.push_back(LoadPlan<T>{module, layer, lin, {}});
      p = &plans.back();
    }
    WEFT_CHECK(!p->values.count(slot), io, fn, "two tensors for the ", slot, " of module '", module, "' in ", f.source());
    const index_t in_f = p->lin->in_features(), out_f = p->lin->out_features(), r = c.r;
    std::vector<index_t> want;
    if (slot == "A") want = {r, in_f};
    else if (slot == "B") want = {out_f, r};
    else if (c.init == "bat") want = {r > 0 && out_f % r == 0 ? out_f / r : -1, r, r};
    else if (c.init == "mini") want = {r, c.mini_r};
    else want = {r, out_f};
    WEFT_CHECK(in.shape == want, shape, fn, "expected shape ", safetensors_shape_string(want), " for tensor '", in.name,
               "' of ", f.source(), " (layer '", layer, "' of shape (", out_f, ", ", in_f, "), r = ", r, "), got ",
               safetensors_shape_string(in.shape));
    p->values[slot] = f.template tensor<T>(in.name);
  }
  WEFT_CHECK(!plans.empty(), io, fn, "expected adapter tensors in ", f.source(), ", got none");
  for (auto& p : plans) {
    if (lora)
      WEFT_CHECK(p.values.count("A") && p.values.count("B"), io, fn, "expected both lora_A and lora_B for module '",
                 p.module, "' in ", f.source(), ", got only ", p.values.count("A") ? "lora_A" : "lora_B");
    bool listed = !c.target_regex.empty() || c.target_modules.empty();
    for (const auto& t : c.target_modules) listed = listed || t == p.module || ends_with(p.module, "." + t);
    WEFT_CHECK(listed, io, fn, "module '", p.module, "' of ", f.source(), " is not among the config's target_modules");
  }
  return plans;
}

inline LoraOptions lora_options(const PeftConfig& c) {
  LoraOptions o;
  o.r = c.r;
  o.alpha = c.lora_alpha;
  o.rslora = c.use_rslora;
  o.dropout = c.dropout;
  if (c.init == "gaussian") o.init = LoraInit::gaussian;
  else if (c.init == "false") o.init = LoraInit::random;
  else if (c.init == "olora") o.init = LoraInit::olora;
  else if (c.init.rfind("pissa", 0) == 0) {
    o.init = LoraInit::pissa;
    if (c.init.size() > 12) o.pissa_niter = std::stoi(c.init.substr(12));
  }
  return o;
}

}  // namespace detail

/// Loads a PEFT adapter directory (or the two files' directory) into `model`: attaches the
/// adapter the config describes to every module the file has tensors for (through
/// options.map_name), then sets its tensors. Everything is checked before the model changes.
/// rng draws the (overwritten) initial factors; PiSSA / OLoRA rewrite the bases as at attach.
template <class T>
Attachment<T> load_adapter(nn::Module<T>& model, const std::string& dir, Rng& rng, const AdapterLoadOptions& options = {}) {
  const char* fn = "peft::load_adapter";
  const std::filesystem::path p(dir);
  const std::string cfg_path = (p / "adapter_config.json").string();
  const PeftConfig c = parse_adapter_config(detail::read_text_file(cfg_path, fn), cfg_path);
  const SafetensorsFile f = load_safetensors((p / "adapter_model.safetensors").string());
  auto plans = detail::plan_adapter(model, c, f, options, fn);
  std::set<std::string> layers;
  for (auto& q : plans) layers.insert(q.layer);
  nn::Selector<T> sel([layers](const std::string& name, const nn::Linear<T>&) { return layers.count(name) != 0; });
  Attachment<T> att;
  if (c.peft_type == "LORA") {
    att = attach_lora(model, detail::lora_options(c), rng, sel);
  } else {
    BoneOptions o;
    o.r = c.r;
    o.dropout = c.dropout;
    o.zero_init = c.init != "false";
    o.mini_r = c.mini_r;
    if (c.init == "bat") att = attach_bone_affine(model, o, rng, sel);
    else if (c.init == "mini") att = attach_miss_mini(model, o, rng, sel);
    else att = attach_bone_shared(model, o, rng, sel);
  }
  for (auto& a : att.adapters) {
    const detail::LoadPlan<T>* q = nullptr;
    for (auto& pl : plans)
      if (pl.layer == a.layer_name) q = &pl;
    auto ps = a.adapter->adapter_parameters();  // "A", "B" / "M" / "M0" / "B" (BoneAffine)
    for (auto& np : ps) {
      const std::string slot = c.peft_type == "LORA" ? np.first : "M";
      np.second.value().copy_from(q->values.at(slot));
    }
  }
  return att;
}

}  // namespace peft
WEFT_NAMESPACE_END
