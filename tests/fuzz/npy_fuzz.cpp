// libFuzzer target: the .npy reader (weft/core/io/npy.hpp) on arbitrary bytes. Every input
// must either load or raise a weft::Error; a loaded array must be consistent with its header.
// Anything else (a crash, a sanitizer report, another exception type, an abort) is a finding.
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include "weft/core/io/npy.hpp"

namespace {

std::istringstream stream_of(const std::uint8_t* data, std::size_t size) {
  return std::istringstream(std::string(reinterpret_cast<const char*>(data), size),
                            std::ios::binary);
}

template <class T>
void load_one(const std::uint8_t* data, std::size_t size, bool convert) {
  std::istringstream in = stream_of(data, size);
  weft::NpyLoadOptions o;
  o.convert = convert;
  try {
    weft::Tensor<T> t = weft::load_npy_stream<T>(in, o, "fuzz input");
    if (!t.defined() || t.numel() != t.shape().numel()) std::abort();
  } catch (const weft::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  load_one<float>(data, size, false);
  load_one<double>(data, size, true);
  load_one<std::complex<double>>(data, size, true);
  std::istringstream in = stream_of(data, size);
  try {
    weft::Int64Array a = weft::load_npy_int64_stream(in, "fuzz input");
    if (std::int64_t(a.values.size()) != std::int64_t(a.shape.numel())) std::abort();
  } catch (const weft::Error&) {
  }
  return 0;
}
