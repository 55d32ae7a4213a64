// tests/fuzz/safetensors_fuzz.cpp - libFuzzer target for the safetensors reader
// (weft/core/io/safetensors.hpp). Everything stays in memory (load_safetensors_bytes).
//
// Properties checked on every input:
//   - the reader either accepts the bytes or raises a weft::Error (nothing else, no crash);
//   - every tensor of an accepted file can be read (tensor<float>/<double> for floating dtypes,
//     int64s for the others) or raises a weft::Error (rank > 4, a BOOL byte > 1, a U64 > 2^63-1);
//   - an accepted file rewritten by the writer is accepted again with the same names, dtypes,
//     shapes, bytes and metadata (the writer must never refuse what the reader accepted).
//   - the readers built on top of it (issue 17) accept or raise a weft::Error on the same
//     bytes: quant::read_quantized_weights (codes, steps and the JSON of their metadata) and
//     prune::load_masks (packed and U8 masks) on every accepted file, and
//     peft::parse_adapter_config (adapter_config.json) on the raw bytes as text.
// A broken property aborts, which libFuzzer reports as a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "weft/core/io/safetensors.hpp"
#include "weft/peft/save.hpp"
#include "weft/prune/save.hpp"
#include "weft/quant/save.hpp"

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "safetensors_fuzz: %s\n", what);
  std::abort();
}

void read_all(const weft::SafetensorsFile& f) {
  for (const weft::SafetensorsInfo& in : f.tensors()) {
    try {
      if (weft::is_floating(in.dtype)) {
        const weft::Tensor<float> a = f.tensor<float>(in.name);
        const weft::Tensor<double> b = f.tensor<double>(in.name);
        if (a.numel() != in.numel || b.numel() != in.numel) broken("element count differs from the header");
      } else if (f.int64s(in.name).size() != std::size_t(in.numel)) {
        broken("int64s returned the wrong count");
      }
    } catch (const weft::Error&) {
    }
  }
}

void rewrite(const weft::SafetensorsFile& f) {
  std::vector<weft::SafetensorsEntry> entries;
  for (const weft::SafetensorsInfo& in : f.tensors()) {
    weft::SafetensorsEntry e;
    e.name = in.name;
    e.dtype = in.dtype;
    e.shape = in.shape;
    const std::uint8_t* p = f.data(in);
    e.bytes.assign(p, p + (in.end - in.begin));
    entries.push_back(std::move(e));
  }
  std::vector<std::uint8_t> bytes;
  try {
    bytes = weft::safetensors_bytes(entries, f.metadata());
  } catch (const weft::Error&) {
    broken("the writer refused a file the reader accepted");
  }
  weft::SafetensorsFile g;
  try {
    g = weft::load_safetensors_bytes(bytes.data(), bytes.size());
  } catch (const weft::Error&) {
    broken("the reader refused the writer's output");
  }
  if (g.tensors().size() != f.tensors().size() || g.metadata() != f.metadata()) broken("rewrite lost tensors or metadata");
  for (const weft::SafetensorsInfo& in : f.tensors()) {
    if (!g.contains(in.name)) broken("rewrite lost a name");
    const weft::SafetensorsInfo& out = g.info(in.name);
    if (out.dtype != in.dtype || out.shape != in.shape || out.end - out.begin != in.end - in.begin ||
        std::memcmp(g.data(out), f.data(in), std::size_t(in.end - in.begin)) != 0)
      broken("rewrite changed a tensor");
  }
}

/// The readers of quantised weights and masks on an accepted file: a weft::Error or a valid result.
void read_compressed(const weft::SafetensorsFile& f) {
  try {
    for (const auto& q : weft::quant::read_quantized_weights<float>(f)) q.second.validate();
  } catch (const weft::Error&) {
  }
  try {
    for (const auto& m : weft::prune::load_masks(f)) m.second.validate();
  } catch (const weft::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const weft::peft::PeftConfig c =
        weft::peft::parse_adapter_config(std::string(reinterpret_cast<const char*>(data), size), "<fuzz>");
    if (c.r < 1 || !(c.dropout >= 0 && c.dropout < 1)) broken("parse_adapter_config accepted an invalid config");
  } catch (const weft::Error&) {
  }
  weft::SafetensorsFile f;
  try {
    f = weft::load_safetensors_bytes(data, size);
  } catch (const weft::Error&) {
    return 0;
  }
  read_all(f);
  rewrite(f);
  read_compressed(f);
  return 0;
}
