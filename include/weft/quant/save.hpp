// weft/quant/save.hpp - a quantised model as a safetensors file of integer codes: save_quantized
// writes, for every layer with a weight quantiser of a QuantAttachment, the codes and steps the
// quantiser exports (quantizer.hpp: value = step (code + offset)), and every other parameter of
// the model as floats; load_quantized reads them into a model without quantisers, each quantised
// weight set to its dequantised codes. The reloaded model computes the trained quantised model's
// output bit for bit (QuantizedWeights::dequantize equals the quantiser's forward), and the codes
// come back as QuantizedWeights for deploy::pack.
//
//   quant::save_quantized(model, att, "model.q.safetensors");        // att = quantize_linears(...)
//   nn::MLP<float> fresh({64, 32, 10}, rng);                          // no quantisers attached
//   auto r = quant::load_quantized(fresh, "model.q.safetensors");     // r.weights[i]: name + codes
//
// File layout, for a quantised layer L (its dotted name, or map_name of "L.weight" minus ".weight"):
//   L.weight.codes   I8 (I16 when a code passes [-128, 127]: 8-bit unsigned LSQ), the weight's shape
//   L.weight.step    F32 (float model) or F64 (double), one per group of the geometry
//   __metadata__["weft.quant.L.weight"] = {"scheme":"statsq","bits":2,"offset":0.5,
//                                          "geometry":[outer,groups,inner]} (JSON text)
// and every other parameter under its (mapped) name, as nn::save_state_dict writes it. Left out:
// the quantised weights and the parameters of the transforms they fold (the quantiser's own,
// LSQ's scale s, and a compander's (a, b) before it: the codes hold Q(Psi(v))).
// A transform after the quantiser (a pruning mask: effective weight Q(W) * M) is not in the codes:
// saving refuses it (ConfigError) unless QuantSaveOptions::allow_masks_after; then save the masks
// with prune::save_masks and apply them again after load_quantized (Q(W) * M bit for bit again).
// Loading checks every code, step, geometry and shape before the model changes (IoError /
// ShapeError / ValueError naming the tensor); the other parameters load as nn::load_state_dict
// loads (strict by default: the model must have no parameter the file lacks besides the
// quantised weights, and the file no tensor the model lacks).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "weft/core/io/safetensors.hpp"
#include "weft/nn/state_dict.hpp"
#include "weft/quant/wrap.hpp"

WEFT_NAMESPACE_BEGIN
namespace quant {

struct QuantSaveOptions {
  /// weft parameter name -> file name (nn::SaveStateDictOptions::map_name); "" leaves it out.
  std::function<std::string(const std::string&)> map_name;
  std::map<std::string, std::string> metadata;  ///< added to "__metadata__"
  /// Allow enabled masks after a quantiser (their W * M is not in the codes: save them too).
  bool allow_masks_after = false;
};

struct QuantLoadOptions {
  bool strict = true;  ///< as nn::LoadStateDictOptions::strict, over the parameters that are not codes
  /// file name -> weft parameter name (nn::LoadStateDictOptions::map_name); "" skips the tensor.
  std::function<std::string(const std::string&)> map_name;
};

/// What load_quantized did: the codes of every quantised layer (weft layer name, codes) and the
/// state-dict report of the other parameters.
template <class T>
struct QuantLoadReport {
  std::vector<std::pair<std::string, QuantizedWeights<T>>> weights;
  nn::StateDictReport rest;
};

namespace detail {
inline std::string qs_map(const std::function<std::string(const std::string&)>& map, const std::string& name) {
  return map ? map(name) : name;
}
}  // namespace detail

/// Writes the quantised layers of `rec` as codes and steps and every other parameter of `model`
/// as floats (see the file comment). Checked before the file is opened.
template <class T>
void save_quantized(nn::Module<T>& model, const QuantAttachment<T>& rec, const std::string& path,
                    const QuantSaveOptions& options = {}) {
  const char* fn = "quant::save_quantized";
  WEFT_CHECK(rec.attached(), config, fn, "expected an attached record, got ", rec.describe(), " detached");
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> meta = options.metadata;
  std::vector<Parameter<T>> folded;  // parameters that live in the codes
  index_t nq = 0;
  for (const auto& q : rec.layers) {
    if (!q.weight) continue;
    const auto& tr = q.layer->transforms();
    std::size_t at = tr.size();
    for (std::size_t i = 0; i < tr.size(); ++i)
      if (tr[i].get() == q.weight.get()) at = i;
    WEFT_CHECK(at < tr.size(), config, fn, "expected the quantiser of '", q.name, "' on its layer, got it removed");
    for (std::size_t i = at + 1; i < tr.size(); ++i)
      WEFT_CHECK(!tr[i]->enabled() || (options.allow_masks_after && tr[i]->stage() == nn::TransformStage::mask), config,
                 fn, "expected the weight quantiser last in the chain of '", q.name, "', got '", tr[i]->name(),
                 "' after it (its effect is not in the codes; for a mask save it with prune::save_masks and set "
                 "QuantSaveOptions::allow_masks_after)");
    Tensor<T> w = q.layer->weight.value().clone();
    for (std::size_t i = 0; i < at; ++i)
      if (tr[i]->enabled()) w = tr[i]->fold(w);
    const QuantizedWeights<T> qw = q.weight->quantize(w);
    qw.validate(fn);
    const std::string name = detail::qs_map(options.map_name, q.name.empty() ? "weight" : q.name + ".weight");
    if (name.empty()) continue;
    std::vector<std::int64_t> codes(qw.codes.begin(), qw.codes.end());
    bool small = true;
    for (auto c : codes) small = small && c >= -128 && c <= 127;
    entries.push_back(safetensors_entry(name + ".codes", codes, std::vector<index_t>(qw.shape.data(), qw.shape.data() + qw.shape.rank()),
                                        small ? SafetensorsDtype::I8 : SafetensorsDtype::I16));
    Tensor<T> step(Shape{index_t(qw.step.size())});
    for (std::size_t m = 0; m < qw.step.size(); ++m) step.flat(index_t(m)) = qw.step[m];
    entries.push_back(safetensors_entry(name + ".step", step));
    nlohmann::json j;
    j["scheme"] = qw.scheme;
    j["bits"] = qw.bits;
    j["offset"] = double(qw.offset);
    j["geometry"] = {qw.geometry.outer, qw.geometry.groups, qw.geometry.inner};
    meta["weft.quant." + name] = j.dump();
    folded.push_back(q.layer->weight);
    std::vector<std::pair<std::string, Parameter<T>>> ps;
    for (std::size_t i = 0; i <= at; ++i) tr[i]->parameters(ps);
    for (auto& p : ps) folded.push_back(p.second);
    ++nq;
  }
  WEFT_CHECK(nq > 0, config, fn, "expected weight quantisers in ", rec.describe(), ", got none");
  for (auto& np : model.named_parameters()) {
    bool skip = false;
    for (auto& f : folded) skip = skip || f == np.second;
    if (skip) continue;
    std::string name = detail::qs_map(options.map_name, np.first);
    if (!name.empty()) entries.push_back(safetensors_entry(std::move(name), np.second.value()));
  }
  save_safetensors(path, entries, meta);
}

/// The codes of every quantised weight in a file, under their file names (".codes" removed).
template <class T>
std::vector<std::pair<std::string, QuantizedWeights<T>>> read_quantized_weights(const SafetensorsFile& f) {
  const char* fn = "quant::load_quantized";
  std::vector<std::pair<std::string, QuantizedWeights<T>>> out;
  const std::string key = "weft.quant.";
  for (const auto& m : f.metadata()) {
    if (m.first.rfind(key, 0) != 0) continue;
    const std::string name = m.first.substr(key.size());
    const nlohmann::json j = nlohmann::json::parse(m.second, nullptr, false);
    WEFT_CHECK(!j.is_discarded() && j.is_object(), io, fn, "expected a JSON object in metadata '", m.first, "' of ",
               f.source());
    auto it_s = j.find("scheme"), it_b = j.find("bits"), it_o = j.find("offset"), it_g = j.find("geometry");
    WEFT_CHECK(it_s != j.end() && it_s->is_string() && it_b != j.end() && it_b->is_number_integer() && it_o != j.end() &&
                   it_o->is_number() && it_g != j.end() && it_g->is_array() && it_g->size() == 3,
               io, fn, "expected scheme (string), bits (integer), offset (number) and geometry (3 integers) in metadata '",
               m.first, "' of ", f.source(), ", got ", m.second);
    for (const auto& g : *it_g)
      WEFT_CHECK(g.is_number_integer() && g.get<std::int64_t>() >= 1 && g.get<std::int64_t>() <= (std::int64_t(1) << 48), io,
                 fn, "expected a positive integer geometry in metadata '", m.first, "' of ", f.source(), ", got ", it_g->dump());
    WEFT_CHECK(f.contains(name + ".codes") && f.contains(name + ".step"), io, fn, "expected tensors '", name,
               ".codes' and '", name, ".step' for metadata '", m.first, "' in ", f.source());
    QuantizedWeights<T> qw;
    qw.scheme = it_s->get<std::string>();
    const std::int64_t bits = it_b->get<std::int64_t>();
    WEFT_CHECK(bits >= 1 && bits <= 8, io, fn, "expected bits in 1..8 for '", name, "' in ", f.source(), ", got ", bits);
    qw.bits = int(bits);
    qw.offset = T(it_o->get<double>());
    qw.geometry.outer = index_t((*it_g)[0].get<std::int64_t>());
    qw.geometry.groups = index_t((*it_g)[1].get<std::int64_t>());
    qw.geometry.inner = index_t((*it_g)[2].get<std::int64_t>());
    const SafetensorsInfo& ci = f.info(name + ".codes");
    WEFT_CHECK(ci.dtype == SafetensorsDtype::I8 || ci.dtype == SafetensorsDtype::I16, io, fn,
               "expected I8 or I16 codes in '", name, ".codes' of ", f.source(), ", got ", to_string(ci.dtype));
    WEFT_CHECK(ci.shape.size() >= 1 && ci.shape.size() <= 4, io, fn, "expected codes of rank 1..4 in '", name,
               ".codes' of ", f.source(), ", got rank ", ci.shape.size());
    qw.shape = Shape::from(ci.shape.data(), int(ci.shape.size()));
    for (std::int64_t c : f.int64s(name + ".codes")) qw.codes.push_back(qcode_t(c));  // I8 / I16 fit qcode_t
    const Tensor<T> step = f.template tensor<T>(name + ".step");
    WEFT_CHECK(step.rank() == 1, io, fn, "expected a rank-1 '", name, ".step' in ", f.source(), ", got shape ",
               step.shape());
    for (index_t i = 0; i < step.numel(); ++i) qw.step.push_back(step.flat(i));
    qw.validate(fn);
    out.emplace_back(name, std::move(qw));
  }
  return out;
}

/// Loads a file of save_quantized into `model` (no quantisers on the quantised layers needed):
/// every quantised weight becomes its dequantised codes, the other parameters load as a state
/// dict. Everything is checked before the model changes.
template <class T>
QuantLoadReport<T> load_quantized(nn::Module<T>& model, const SafetensorsFile& f, const QuantLoadOptions& options = {}) {
  const char* fn = "quant::load_quantized";
  auto qws = read_quantized_weights<T>(f);
  WEFT_CHECK(!qws.empty(), io, fn, "expected quantised weights (metadata 'weft.quant.*') in ", f.source(), ", got none");
  auto params = model.named_parameters();
  QuantLoadReport<T> rep;
  std::vector<std::pair<Parameter<T>, Tensor<T>>> staged;
  std::set<std::string> quantised;  // weft names
  std::set<std::string> code_tensors;
  for (auto& q : qws) {
    const std::string name = detail::qs_map(options.map_name, q.first);
    code_tensors.insert(q.first + ".codes");
    code_tensors.insert(q.first + ".step");
    if (name.empty()) continue;
    const Parameter<T>* p = nullptr;
    for (auto& np : params)
      if (np.first == name) p = &np.second;
    WEFT_CHECK(p != nullptr, io, fn, "quantised weight '", q.first, "' of ", f.source(), " maps to '", name,
               "', which is no parameter of the model");
    WEFT_CHECK(p->shape() == q.second.shape, shape, fn, "expected shape ", p->shape(), " for '", name, "', got codes of shape ",
               q.second.shape, " from '", q.first, ".codes' of ", f.source());
    staged.emplace_back(*p, q.second.dequantize());
    quantised.insert(name);
    const std::string suf = ".weight";
    rep.weights.emplace_back(name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0
                                 ? name.substr(0, name.size() - suf.size())
                                 : name,
                             std::move(q.second));
  }
  nn::LoadStateDictOptions lo;
  lo.strict = false;
  lo.map_name = [&](const std::string& n) { return code_tensors.count(n) ? std::string() : detail::qs_map(options.map_name, n); };
  // a dry run of the strictness rule before anything changes
  if (options.strict) {
    std::set<std::string> supplied;
    std::vector<std::string> unexpected, missing;
    for (const auto& in : f.tensors()) {
      const std::string n = lo.map_name(in.name);
      if (n.empty()) continue;
      bool known = false;
      for (auto& np : params) known = known || np.first == n;
      if (known) supplied.insert(n);
      else unexpected.push_back(in.name);
    }
    for (auto& np : params)
      if (!supplied.count(np.first) && !quantised.count(np.first)) missing.push_back(np.first);
    WEFT_CHECK(missing.empty() && unexpected.empty(), io, fn, "strict load from ", f.source(), " failed, the model is unchanged: ",
               missing.size(), " missing parameter(s) [", nn::detail::sd_join(missing), "], ", unexpected.size(),
               " unexpected tensor(s) [", nn::detail::sd_join(unexpected), "]");
  }
  rep.rest = nn::load_state_dict(model, f, lo);  // checks shapes and dtypes before it changes anything
  for (auto& s : staged) s.first.value().copy_from(s.second);
  return rep;
}

/// The same from a path.
template <class T>
QuantLoadReport<T> load_quantized(nn::Module<T>& model, const std::string& path, const QuantLoadOptions& options = {}) {
  return load_quantized(model, load_safetensors(path), options);
}

}  // namespace quant
WEFT_NAMESPACE_END
