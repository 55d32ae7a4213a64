// weft/prune/save.hpp - pruning masks as a safetensors file: save_masks writes the masks of a
// MaskAttachment, load_masks reads them, and load_and_apply_masks puts them on a model again
// (prune::apply_masks: W <- W * M and the mask transform), so a pruned model reloads with the
// same zeros and, with its weights loaded too, the same outputs bit for bit.
//
//   prune::save_masks(pruned, "masks.safetensors");                 // packed bits by default
//   nn::load_state_dict(fresh, "weights.safetensors");
//   auto again = prune::load_and_apply_masks(fresh, "masks.safetensors");
//
// Layout, for the pruned layer L (its dotted name, or map_name of "L.weight_mask"):
//   MaskFormat::packed_bits  L.weight_mask_packed  U8 (rows, ceil(cols / 8)): keep bit c of a row in
//                            byte c / 8 at bit c % 8 (least significant first: numpy's
//                            packbits(bitorder="little")), unused high bits 0;
//                            __metadata__["weft.mask.L.weight_mask_packed"] = "cols" (as text)
//   MaskFormat::u8           L.weight_mask  U8 (rows, cols) of 0 / 1 (PyTorch's prune module
//                            keeps a float buffer of this name: torch.from_numpy(m).float()).
// Reading checks dtypes, shapes, the 0 / 1 values, the padding bits and the column count (IoError
// naming the tensor). Quantised models with masks: quant/save.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/io/safetensors.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/select.hpp"
#include "weft/prune/attach.hpp"

WEFT_NAMESPACE_BEGIN
namespace prune {

enum class MaskFormat { packed_bits, u8 };

struct MaskSaveOptions {
  MaskFormat format = MaskFormat::packed_bits;
  /// weft name "L.weight_mask" -> file name (without "_packed"); "" leaves the mask out.
  std::function<std::string(const std::string&)> map_name;
  std::map<std::string, std::string> metadata;
};

/// The safetensors entries (and metadata entries) of masks named by layer.
inline std::vector<SafetensorsEntry> mask_entries(const std::vector<std::pair<std::string, Mask>>& masks,
                                                  const MaskSaveOptions& options, std::map<std::string, std::string>& meta) {
  const char* fn = "prune::save_masks";
  std::vector<SafetensorsEntry> out;
  for (const auto& nm : masks) {
    const Mask& m = nm.second;
    m.validate(fn);
    const std::string base = nm.first.empty() ? "weight_mask" : nm.first + ".weight_mask";
    const std::string name = options.map_name ? options.map_name(base) : base;
    if (name.empty()) continue;
    SafetensorsEntry e;
    e.dtype = SafetensorsDtype::U8;
    if (options.format == MaskFormat::u8) {
      e.name = name;
      e.shape = {m.rows, m.cols};
      e.bytes = m.keep;
    } else {
      const index_t per = (m.cols + 7) / 8;
      e.name = name + "_packed";
      e.shape = {m.rows, per};
      e.bytes.assign(std::size_t(m.rows * per), 0);
      for (index_t r = 0; r < m.rows; ++r)
        for (index_t c = 0; c < m.cols; ++c)
          if (m.keep[std::size_t(r * m.cols + c)]) e.bytes[std::size_t(r * per + c / 8)] |= std::uint8_t(1u << (c % 8));
      meta["weft.mask." + e.name] = std::to_string(m.cols);
    }
    out.push_back(std::move(e));
  }
  return out;
}

/// Writes the masks of a MaskAttachment (or of any pruned weights) to `path`.
template <class T>
void save_masks(const std::vector<PrunedWeight<T>>& pruned, const std::string& path, const MaskSaveOptions& options = {}) {
  std::vector<std::pair<std::string, Mask>> masks;
  for (const auto& p : pruned) {
    WEFT_CHECK(p.mask != nullptr, config, "prune::save_masks", "expected a mask transform for '", p.name,
               "', got none (masks applied without a transform: save the weights, whose zeros are the mask)");
    masks.emplace_back(p.name, p.mask->mask());
  }
  std::map<std::string, std::string> meta = options.metadata;
  auto entries = mask_entries(masks, options, meta);
  save_safetensors(path, entries, meta);
}

/// Every mask of a file, by weft layer name (map_name: file name -> weft "L.weight_mask").
inline std::vector<std::pair<std::string, Mask>> load_masks(const SafetensorsFile& f,
                                                            const std::function<std::string(const std::string&)>& map_name = {}) {
  const char* fn = "prune::load_masks";
  std::vector<std::pair<std::string, Mask>> out;
  for (const SafetensorsInfo& in : f.tensors()) {
    const bool packed = in.name.size() > 19 && in.name.compare(in.name.size() - 19, 19, ".weight_mask_packed") == 0;
    const std::string file_name = packed ? in.name.substr(0, in.name.size() - 7) : in.name;
    WEFT_CHECK(packed || (in.name.size() >= 11 && in.name.compare(in.name.size() - 11, 11, "weight_mask") == 0), io, fn,
               "unexpected tensor '", in.name, "' in ", f.source(), " (expected <layer>.weight_mask or <layer>.weight_mask_packed)");
    WEFT_CHECK(in.dtype == SafetensorsDtype::U8 || in.dtype == SafetensorsDtype::BOOL, io, fn, "expected U8 or BOOL for mask '",
               in.name, "' in ", f.source(), ", got ", to_string(in.dtype));
    WEFT_CHECK(in.shape.size() == 2, io, fn, "expected a (rows, cols) mask '", in.name, "' in ", f.source(), ", got shape ",
               safetensors_shape_string(in.shape));
    const std::string name = map_name ? map_name(file_name) : file_name;
    if (name.empty()) continue;
    const std::uint8_t* p = f.data(in);
    Mask m;
    m.rows = in.shape[0];
    if (!packed) {
      m.cols = in.shape[1];
      m.keep.assign(p, p + in.numel);
      for (std::size_t i = 0; i < m.keep.size(); ++i)
        WEFT_CHECK(m.keep[i] <= 1, io, fn, "expected 0 or 1 in mask '", in.name, "' of ", f.source(), ", got ", int(m.keep[i]),
                   " at element ", i);
    } else {
      auto it = f.metadata().find("weft.mask." + in.name);
      WEFT_CHECK(it != f.metadata().end(), io, fn, "expected the column count in metadata 'weft.mask.", in.name, "' of ",
                 f.source());
      const std::string& s = it->second;
      WEFT_CHECK(!s.empty() && s.size() <= 15 && s.find_first_not_of("0123456789") == std::string::npos, io, fn,
                 "expected a column count in metadata 'weft.mask.", in.name, "' of ", f.source(), ", got '", s, "'");
      m.cols = index_t(std::stoll(s));
      const index_t per = in.shape[1];
      WEFT_CHECK(per == (m.cols + 7) / 8, io, fn, "expected ", (m.cols + 7) / 8, " bytes per row for ", m.cols,
                 " columns in mask '", in.name, "' of ", f.source(), ", got ", per);
      m.keep.assign(std::size_t(m.rows * m.cols), 0);
      for (index_t r = 0; r < m.rows; ++r) {
        for (index_t c = 0; c < m.cols; ++c) m.keep[std::size_t(r * m.cols + c)] = (p[r * per + c / 8] >> (c % 8)) & 1u;
        if (m.cols % 8)
          WEFT_CHECK((p[r * per + per - 1] >> (m.cols % 8)) == 0, io, fn, "expected zero padding bits in row ", r,
                     " of mask '", in.name, "' of ", f.source());
      }
    }
    const std::string suf = ".weight_mask";
    const bool has = name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
    out.emplace_back(has ? name.substr(0, name.size() - suf.size()) : (name == "weight_mask" ? std::string() : name),
                     std::move(m));
  }
  return out;
}

/// Reads the masks of the file at `path` and applies them to the layers of `model` they name
/// (prune::apply_masks with attach_transform; all checked first, model unchanged on error).
template <class T>
MaskAttachment<T> load_and_apply_masks(nn::Module<T>& model, const std::string& path,
                                       const std::function<std::string(const std::string&)>& map_name = {}) {
  const char* fn = "prune::load_and_apply_masks";
  const auto masks = load_masks(load_safetensors(path), map_name);
  WEFT_CHECK(!masks.empty(), io, fn, "expected masks in ", path, ", got none");
  std::vector<std::string> names;
  for (const auto& m : masks) names.push_back(m.first);
  const auto lins = nn::find_linears(model);
  std::vector<Mask> ordered;  // in the model's layer order, as apply_masks resolves the selector
  for (const auto& l : lins)
    for (const auto& m : masks)
      if (m.first == l.first) ordered.push_back(m.second);
  for (const auto& m : masks) {
    bool found = false;
    for (const auto& l : lins) found = found || l.first == m.first;
    WEFT_CHECK(found, io, fn, "mask for '", m.first, "' in ", path, " names no Linear of the model");
  }
  nn::Selector<T> sel([names](const std::string& n, const nn::Linear<T>&) {
    for (const auto& x : names)
      if (x == n) return true;
    return false;
  });
  return apply_masks(model, sel, ordered);
}

}  // namespace prune
WEFT_NAMESPACE_END
