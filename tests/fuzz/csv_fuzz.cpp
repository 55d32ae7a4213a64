// libFuzzer target: the CSV reader (weft/core/io/csv.hpp). The first input byte chooses the
// options (bits 0-1: delimiter , ; tab space; bit 2: whitespace mode; bit 3: header line), the
// rest is the text. Every input must either give a rows x cols table or raise a weft::Error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include "weft/core/io/csv.hpp"

namespace {

template <class T>
void read_one(const std::string& text, const weft::CsvOptions& o) {
  std::istringstream in(text);
  try {
    weft::Tensor<T> t = weft::read_csv_stream<T>(in, o, "fuzz input");
    if (t.rank() != 2 || t.dim(0) < 1 || t.dim(1) < 1 || t.numel() != t.dim(0) * t.dim(1))
      std::abort();
  } catch (const weft::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const char delimiters[] = {',', ';', '\t', ' '};
  weft::CsvOptions o;
  o.delimiter = delimiters[data[0] & 3];
  o.whitespace = (data[0] & 4) != 0;
  o.header = (data[0] & 8) != 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  read_one<double>(text, o);
  read_one<float>(text, o);
  return 0;
}
