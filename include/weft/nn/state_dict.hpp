// weft/nn/state_dict.hpp - save_state_dict / load_state_dict: a module's parameters as a
// safetensors file (core/io/safetensors.hpp), keyed by their dotted names.
//
// The keys are Module::named_parameters() names ("layers.0.weight", "blocks.1.attn.q_proj.bias").
// Saving writes F32 for float modules and F64 for double ones (or the dtype in the options).
// Loading reads F16, BF16, F32 or F64 into float or double parameters (F32 into a double model
// is exact; F64 into a float model rounds).
//
// Loading validates everything first and changes the module only when nothing is wrong (the
// values are converted into temporaries, then copied in):
//   - every file tensor goes through options.map_name (file name -> weft name; "" skips it);
//     two file tensors mapping to one weft name is an IoError;
//   - a mapped tensor whose shape differs from the parameter's is a ShapeError, an integer or
//     BOOL tensor an IoError, in both modes (as PyTorch's load_state_dict);
//   - strict (the default): a parameter the file does not supply (missing) or a file tensor no
//     parameter takes (unexpected) is an IoError listing them all;
//   - non-strict: loads what matches and reports missing, unexpected and loaded names.
//
// PyTorch: weft's Linear stores its weight as (out, in), as torch.nn.Linear does, so a PyTorch
// state_dict loads without transposing; only names differ (an nn.Sequential's "0.weight" is an
// MLP's "layers.0.weight", a LayerNorm's weight/bias are gamma/beta). options.transpose is for
// formats that store dense kernels as (in, out) (Keras, Flax): a 2-D tensor whose weft name it
// accepts is transposed before the shape check. docs/io.md has the mapping of nn.Sequential.
#pragma once

#include <algorithm>
#include <functional>
#include <type_traits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/io/safetensors.hpp"
#include "weft/nn/module.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

/// Options of save_state_dict.
struct SaveStateDictOptions {
  std::map<std::string, std::string> metadata;  ///< written as "__metadata__"
  /// weft name -> file name; "" leaves the parameter out. Unset: the weft name.
  std::function<std::string(const std::string&)> map_name;
  /// F32/F64 by default (the module's scalar); F16 or BF16 round to nearest even.
  enum class Dtype { native, f16, bf16, f32, f64 } dtype = Dtype::native;
};

/// Options of load_state_dict.
struct LoadStateDictOptions {
  bool strict = true;  ///< every parameter supplied and every file tensor used, or IoError
  /// file name -> weft name; "" skips the tensor. Unset: the file name.
  std::function<std::string(const std::string&)> map_name;
  /// weft names of 2-D tensors stored transposed, (in, out), in the file. Unset: none.
  std::function<bool(const std::string&)> transpose;
};

/// What load_state_dict did. loaded and missing hold weft names in the module's order;
/// unexpected and skipped hold file names in file order ("file (-> mapped)" when renamed).
struct StateDictReport {
  std::vector<std::string> loaded;      ///< parameters set from the file
  std::vector<std::string> missing;     ///< parameters the file does not supply (left as they were)
  std::vector<std::string> unexpected;  ///< file tensors whose (mapped) name is no parameter
  std::vector<std::string> skipped;     ///< file tensors map_name sent to ""
};

namespace detail {
inline std::string sd_join(const std::vector<std::string>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
  return s;
}
}  // namespace detail

/// The module's parameters as safetensors entries (named and converted as `options` says).
template <class T>
std::vector<SafetensorsEntry> state_dict_entries(Module<T>& module, const SaveStateDictOptions& options = {}) {
  using D = SaveStateDictOptions::Dtype;
  const D d = options.dtype;
  const SafetensorsDtype dtype = d == D::f16 ? SafetensorsDtype::F16
                                 : d == D::bf16 ? SafetensorsDtype::BF16
                                 : d == D::f32 || (d == D::native && std::is_same_v<T, float>) ? SafetensorsDtype::F32
                                                                                               : SafetensorsDtype::F64;
  std::vector<SafetensorsEntry> out;
  for (auto& np : module.named_parameters()) {
    std::string name = options.map_name ? options.map_name(np.first) : np.first;
    if (!name.empty()) out.push_back(safetensors_entry(std::move(name), np.second.value(), dtype));
  }
  return out;
}

/// Writes the module's parameters to `path` (safetensors). Mapped names must stay unique.
template <class T>
void save_state_dict(Module<T>& module, const std::string& path, const SaveStateDictOptions& options = {}) {
  save_safetensors(path, state_dict_entries(module, options), options.metadata);
}

/// Loads parameters from an open safetensors file (see the file comment for the rules).
template <class T>
StateDictReport load_state_dict(Module<T>& module, const SafetensorsFile& file,
                                const LoadStateDictOptions& options = {}) {
  constexpr const char* func = "nn::load_state_dict";
  auto params = module.named_parameters();
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < params.size(); ++i) index[params[i].first] = i;

  StateDictReport r;
  std::map<std::string, std::string> source;   // weft name -> the file tensor that supplies it
  std::vector<std::pair<std::size_t, Tensor<T>>> staged;
  for (const SafetensorsInfo& in : file.tensors()) {
    const std::string name = options.map_name ? options.map_name(in.name) : in.name;
    if (name.empty()) {
      r.skipped.push_back(in.name);
      continue;
    }
    auto it = index.find(name);
    if (it == index.end()) {
      r.unexpected.push_back(name == in.name ? in.name : in.name + " (-> " + name + ")");
      continue;
    }
    auto [prev, fresh] = source.emplace(name, in.name);
    WEFT_CHECK(fresh, io, func, "tensors '", prev->second, "' and '", in.name, "' of ", file.source(),
               " both map to the parameter '", name, "'");
    const Shape& want = params[it->second].second.shape();
    const bool tr = options.transpose && in.shape.size() == 2 && options.transpose(name);
    std::vector<index_t> got = in.shape;
    if (tr) std::swap(got[0], got[1]);
    WEFT_CHECK(got == std::vector<index_t>(want.data(), want.data() + want.rank()), shape, func, "expected shape ",
               want, " for parameter '", name, "', got ", safetensors_shape_string(got),
               tr ? " (transposed on load)" : "", " from tensor '", in.name, "' of ", file.source());
    WEFT_CHECK(is_floating(in.dtype), io, func, "expected a floating-point tensor for parameter '", name, "', got ",
               to_string(in.dtype), " from tensor '", in.name, "' of ", file.source());
    Tensor<T> v = file.template tensor<T>(in.name);
    staged.emplace_back(it->second, tr ? v.transpose() : v);
  }
  for (auto& p : params)
    if (!source.count(p.first)) r.missing.push_back(p.first);
  WEFT_CHECK(!options.strict || (r.missing.empty() && r.unexpected.empty()), io, func, "strict load from ",
             file.source(), " failed, the module is unchanged: ", r.missing.size(), " missing parameter(s) [",
             detail::sd_join(r.missing), "], ", r.unexpected.size(), " unexpected tensor(s) [",
             detail::sd_join(r.unexpected), "] (pass LoadStateDictOptions{.strict = false} to load the rest, or "
             "map_name to rename)");
  std::sort(staged.begin(), staged.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& s : staged) {
    params[s.first].second.value().copy_from(s.second);
    r.loaded.push_back(params[s.first].first);
  }
  return r;
}

/// Loads parameters from the safetensors file at `path`.
template <class T>
StateDictReport load_state_dict(Module<T>& module, const std::string& path, const LoadStateDictOptions& options = {}) {
  return load_state_dict(module, load_safetensors(path), options);
}

}  // namespace nn
WEFT_NAMESPACE_END
