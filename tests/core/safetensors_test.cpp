// Tests of weft/core/io/safetensors.hpp: round trips of every dtype in float and double, the
// half/bfloat16 rounding, the writer's sorted and aligned layout against hand-built bytes, and
// every malformed header the reader must refuse (each an IoError naming the tensor).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/io/safetensors.hpp"

namespace weft_unit_core_safetensors_test {

namespace fs = std::filesystem;
using namespace weft;
using Bytes = std::vector<std::uint8_t>;

namespace {

std::string tmp(const std::string& name) { return weft::test::temp_path(name); }

// A file from its header text and data bytes: 8-byte little-endian size, header, data.
Bytes st_file(const std::string& header, const Bytes& data = {}, std::uint64_t size_field = ~std::uint64_t(0)) {
  const std::uint64_t n = size_field == ~std::uint64_t(0) ? header.size() : size_field;
  Bytes out(8 + header.size() + data.size());
  for (int k = 0; k < 8; ++k) out[std::size_t(k)] = std::uint8_t(n >> (8 * k));
  std::copy(data.begin(), data.end(), std::copy(header.begin(), header.end(), out.begin() + 8));
  return out;
}

template <class V>
void put(Bytes& b, V v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof(V));
}

std::string load_error(const Bytes& b) {
  try {
    load_safetensors_bytes(b.data(), b.size());
  } catch (const IoError& e) {
    return e.what();
  } catch (const Error& e) {
    return std::string("wrong error class: ") + e.what();
  }
  return "no error";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// CHECK that the bytes are refused with an IoError from load_safetensors_bytes mentioning `part`.
#define CHECK_REFUSED(bytes, part)                                             \
  do {                                                                         \
    const std::string msg_ = load_error(bytes);                                \
    INFO(msg_);                                                                \
    CHECK(has(msg_, "weft::load_safetensors_bytes: "));                        \
    CHECK(has(msg_, part));                                                    \
  } while (0)

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

TEST_CASE_TEMPLATE("core/safetensors: floating round trip through F32, F64, F16 and BF16", T, float, double) {
  std::mt19937 gen(7);
  std::normal_distribution<double> dist(0.0, 3.0);
  Tensor<T> a(Shape{3, 5});
  for (T& x : a) x = T(dist(gen));
  Tensor<T> s = Tensor<T>::scalar(T(-1.25));
  Tensor<T> z(Shape{0, 4});
  Tensor<T> r4(Shape{2, 1, 3, 2});
  for (T& x : r4) x = T(dist(gen));
  std::vector<SafetensorsEntry> e = {safetensors_entry("a32", a, SafetensorsDtype::F32),
                                     safetensors_entry("a64", a, SafetensorsDtype::F64),
                                     safetensors_entry("a16", a, SafetensorsDtype::F16),
                                     safetensors_entry("abf", a, SafetensorsDtype::BF16),
                                     safetensors_entry("native", a),
                                     safetensors_entry("scalar", s),
                                     safetensors_entry("empty", z),
                                     safetensors_entry("rank4", r4)};
  CHECK(e[4].dtype == (std::is_same_v<T, float> ? SafetensorsDtype::F32 : SafetensorsDtype::F64));
  const std::string path = tmp(std::string("float_rt_") + (std::is_same_v<T, float> ? "f" : "d") + ".safetensors");
  save_safetensors(path, e, {{"format", "pt"}, {"note", "ünïcode ok"}});
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.source() == path);
  CHECK(f.tensors().size() == 8);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("note") == "ünïcode ok");
  for (const char* n : {"a32", "a64", "a16", "abf", "native"}) CHECK(f.info(n).shape == std::vector<index_t>{3, 5});
  CHECK(f.info("a16").dtype == SafetensorsDtype::F16);
  Tensor<T> native = f.tensor<T>("native"), b64 = f.tensor<T>("a64");
  Tensor<float> b32 = f.tensor<float>("a32");
  Tensor<double> b16 = f.tensor<double>("a16"), bbf = f.tensor<double>("abf");
  for (index_t i = 0; i < a.numel(); ++i) {
    CHECK(native.flat(i) == a.flat(i));  // bit-identical in the module's own precision
    CHECK(b64.flat(i) == a.flat(i));
    CHECK(b32.flat(i) == float(a.flat(i)));
    // half has 11 significant bits, bfloat16 8: round to nearest is within half an ulp
    const double x = double(a.flat(i));
    CHECK(std::fabs(b16.flat(i) - x) <= std::ldexp(std::fabs(x), -11) + std::ldexp(1.0, -25));
    CHECK(std::fabs(bbf.flat(i) - x) <= std::ldexp(std::fabs(x), -8));
  }
  CHECK(f.tensor<T>("scalar").rank() == 0);
  CHECK(f.tensor<T>("scalar").item() == T(-1.25));
  CHECK(f.tensor<T>("empty").shape() == Shape{0, 4});
  Tensor<T> r4b = f.tensor<T>("rank4");
  CHECK(r4b.shape() == r4.shape());
  for (index_t i = 0; i < r4.numel(); ++i) CHECK(r4b.flat(i) == r4.flat(i));
  // the same bytes from memory
  Bytes mem = safetensors_bytes(e, {{"format", "pt"}, {"note", "ünïcode ok"}});
  std::ifstream in(path, std::ios::binary);
  Bytes disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(mem == disk);
  CHECK(load_safetensors_bytes(mem.data(), mem.size()).source() == "<bytes>");
}

TEST_CASE("core/safetensors: integer and BOOL dtypes round trip at their extremes") {
  struct Case {
    SafetensorsDtype d;
    std::vector<std::int64_t> v;
  };
  const std::vector<Case> cases = {
      {SafetensorsDtype::BOOL, {0, 1, 1, 0}},
      {SafetensorsDtype::U8, {0, 255, 17, 1}},
      {SafetensorsDtype::I8, {-128, 127, 0, -1}},
      {SafetensorsDtype::I16, {-32768, 32767, 300, -300}},
      {SafetensorsDtype::U16, {0, 65535, 40000, 1}},
      {SafetensorsDtype::I32, {INT32_MIN, INT32_MAX, 70000, -70000}},
      {SafetensorsDtype::U32, {0, INT64_C(4294967295), 3000000000, 5}},
      {SafetensorsDtype::I64, {INT64_MIN, INT64_MAX, 0, -5}},
      {SafetensorsDtype::U64, {0, INT64_MAX, 1, 2}},
  };
  std::vector<SafetensorsEntry> e;
  for (const Case& c : cases) e.push_back(safetensors_entry(std::string("t_") + to_string(c.d), c.v, {2, 2}, c.d));
  Bytes b = safetensors_bytes(e);
  SafetensorsFile f = load_safetensors_bytes(b.data(), b.size());
  for (const Case& c : cases) {
    const std::string n = std::string("t_") + to_string(c.d);
    CAPTURE(n);
    CHECK(f.info(n).dtype == c.d);
    CHECK(f.info(n).end - f.info(n).begin == 4 * safetensors_itemsize(c.d));
    CHECK(f.int64s(n) == c.v);
  }
  // every value outside a dtype's range is refused on write
  CHECK_THROWS_AS(safetensors_entry("x", {2}, {1}, SafetensorsDtype::BOOL), ValueError);
  CHECK_THROWS_AS(safetensors_entry("x", {256}, {1}, SafetensorsDtype::U8), ValueError);
  CHECK_THROWS_AS(safetensors_entry("x", {-129}, {1}, SafetensorsDtype::I8), ValueError);
  CHECK_THROWS_AS(safetensors_entry("x", {32768}, {1}, SafetensorsDtype::I16), ValueError);
  CHECK_THROWS_AS(safetensors_entry("x", {-1}, {1}, SafetensorsDtype::U16), ValueError);
  CHECK_THROWS_AS(safetensors_entry("x", {INT64_C(2147483648)}, {1}, SafetensorsDtype::I32), ValueError);
  CHECK_THROWS_AS(safetensors_entry("x", {-1}, {1}, SafetensorsDtype::U32), ValueError);
  CHECK_THROWS_AS(safetensors_entry("x", {-1}, {1}, SafetensorsDtype::U64), ValueError);
  CHECK_THROWS_AS(safetensors_entry("x", {1}, {1}, SafetensorsDtype::F32), ValueError);
  CHECK_THROWS_AS(safetensors_entry("x", {1, 2, 3}, {2, 2}), ShapeError);
  CHECK_THROWS_AS(safetensors_entry("x", {}, {-1}), ShapeError);
}

TEST_CASE("core/safetensors: half and bfloat16 encodings, exhaustively and at the edges") {
  // every non-NaN bit pattern decodes and encodes back to itself (from float and from double)
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = std::uint16_t(b);
    const double x = weft::detail::st_decode_small(h, 5, 10), y = weft::detail::st_decode_small(h, 8, 7);
    if (!std::isnan(x)) REQUIRE(weft::detail::st_encode_small(double(float(x)), 5, 10) == h);
    if (!std::isnan(y)) REQUIRE(weft::detail::st_encode_small(y, 8, 7) == h);
    if (std::isnan(x)) REQUIRE(std::isnan(weft::detail::st_decode_small(weft::detail::st_encode_small(x, 5, 10), 5, 10)));
  }
  auto f16 = [](double x) { return weft::detail::st_encode_small(x, 5, 10); };
  CHECK(f16(1.0) == 0x3c00);
  CHECK(f16(-2.0) == 0xc000);
  CHECK(f16(65504.0) == 0x7bff);       // largest finite
  CHECK(f16(65519.99) == 0x7bff);
  CHECK(f16(65520.0) == 0x7c00);       // the tie above the largest finite rounds to inf
  CHECK(f16(-1e300) == 0xfc00);
  CHECK(f16(std::ldexp(1.0, -14)) == 0x0400);  // smallest normal
  CHECK(f16(std::ldexp(1.0, -24)) == 0x0001);  // smallest subnormal
  CHECK(f16(std::ldexp(1.0, -25)) == 0x0000);  // tie between 0 and 2^-24: even
  CHECK(f16(std::ldexp(3.0, -25)) == 0x0002);  // tie between 1 and 2 ulps: even
  CHECK(f16(1.0 + std::ldexp(1.0, -11)) == 0x3c00);      // tie: even
  CHECK(f16(1.0 + std::ldexp(3.0, -11)) == 0x3c02);      // tie: even (up)
  CHECK(f16(1.0 / 3.0) == 0x3555);
  CHECK(f16(-0.0) == 0x8000);
  CHECK((f16(std::numeric_limits<double>::quiet_NaN()) & 0x7fff) > 0x7c00);
  // bfloat16 against the usual bit trick on float (round to nearest even on the top 16 bits)
  std::mt19937 gen(3);
  std::uniform_int_distribution<std::uint32_t> any;
  for (int k = 0; k < 200000; ++k) {
    const std::uint32_t u = any(gen);
    const float f = float_of(u);
    if (std::isnan(f)) continue;
    const std::uint32_t expect = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // overflow carries into inf
    REQUIRE(weft::detail::st_encode_small(double(f), 8, 7) == std::uint16_t(expect));
  }
  CHECK(bits_of(float(weft::detail::st_decode_small(0x3f80, 8, 7))) == 0x3f800000u);
}

TEST_CASE("core/safetensors: the writer's layout, byte for byte") {
  // the reference implementation's own serialisation test: one F32 tensor of shape (1, 2, 3)
  Tensor<float> t = Tensor<float>::from_values({0, 1, 2, 3, 4, 5}, Shape{1, 2, 3});
  Bytes data;
  for (float v : {0.f, 1.f, 2.f, 3.f, 4.f, 5.f}) put(data, v);
  CHECK(safetensors_bytes({safetensors_entry("attn.0", t)}) ==
        st_file(R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})", data));
  // a shorter name: 7 spaces pad the header to 72 bytes
  Tensor<float> t4 = t.reshape({1, 1, 2, 3});
  CHECK(safetensors_bytes({safetensors_entry("attn0", t4)}) ==
        st_file(R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" + std::string(7, ' '), data));
  // nothing at all: "{}" and six spaces
  CHECK(safetensors_bytes({}) == st_file("{}      "));
  CHECK(safetensors_bytes({}, {{"framework", "pt"}}) == st_file(R"({"__metadata__":{"framework":"pt"}})" + std::string(5, ' ')));

  // sorted by dtype alignment (largest first), then by name; metadata first
  std::vector<SafetensorsEntry> e = {
      safetensors_entry("b", Tensor<float>::from_values({1.5f, -2.f}, Shape{2})),
      safetensors_entry("m", {7, 8, 9}, {3}, SafetensorsDtype::U8),
      safetensors_entry("a", Tensor<float>::from_values({3.f}, Shape{1})),
      safetensors_entry("c", Tensor<double>::scalar(0.25)),
      safetensors_entry("z", {-3}, {1, 1}, SafetensorsDtype::I64),
      safetensors_entry("h", Tensor<float>::from_values({1.f}, Shape{1}), SafetensorsDtype::BF16),
      safetensors_entry("B", {1, 0}, {2}, SafetensorsDtype::BOOL),
  };
  const std::string header =
      R"({"__metadata__":{"format":"pt","w":"eft"},)"
      R"("z":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]},)"
      R"("c":{"dtype":"F64","shape":[],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[20,28]},)"
      R"("h":{"dtype":"BF16","shape":[1],"data_offsets":[28,30]},)"
      R"("m":{"dtype":"U8","shape":[3],"data_offsets":[30,33]},)"
      R"("B":{"dtype":"BOOL","shape":[2],"data_offsets":[33,35]}})";
  Bytes d;
  put(d, std::int64_t(-3));
  put(d, 0.25);
  put(d, 3.f);
  put(d, 1.5f);
  put(d, -2.f);
  put(d, std::uint16_t(0x3f80));
  for (std::uint8_t v : {7, 8, 9, 1, 0}) d.push_back(v);
  const std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  const Bytes expect = st_file(padded, d);
  CHECK((8 + padded.size()) % 8 == 0);
  CHECK(safetensors_bytes(e, {{"w", "eft"}, {"format", "pt"}}) == expect);
  const std::string path = tmp("layout.safetensors");
  save_safetensors(path, e, {{"w", "eft"}, {"format", "pt"}});
  std::ifstream in(path, std::ios::binary);
  CHECK(Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()) == expect);
  // and the reader reports them in offset order
  SafetensorsFile f = load_safetensors(path);
  std::vector<std::string> names;
  for (const auto& i : f.tensors()) names.push_back(i.name);
  CHECK(names == std::vector<std::string>{"z", "c", "a", "b", "h", "m", "B"});
  CHECK(f.tensor<double>("c").item() == 0.25);
  CHECK(f.tensor<float>("h").item() == 1.f);
}

TEST_CASE("core/safetensors: the reader accepts files written in any tensor order") {
  // offsets need not follow the key order; data is found by offset
  Bytes d;
  put(d, 2.f);
  put(d, 1.0);
  const std::string h = R"({"y":{"dtype":"F64","shape":[],"data_offsets":[4,12]},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  Bytes b = st_file(h, d);
  SafetensorsFile f = load_safetensors_bytes(b.data(), b.size());
  CHECK(f.tensors()[0].name == "x");
  CHECK(f.tensor<double>("x").flat(0) == 2.0);
  CHECK(f.tensor<float>("y").item() == 1.f);
  // unknown keys inside an entry are ignored (as the reference does); whitespace padding is fine
  Bytes g = st_file(R"(  {"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":[1]}}   )", Bytes{0, 0, 128, 63});
  CHECK(load_safetensors_bytes(g.data(), g.size()).tensor<float>("x").flat(0) == 1.f);
}

TEST_CASE("core/safetensors: every malformed header is an IoError naming the tensor") {
  const Bytes four{0, 0, 128, 63};  // 1.0f
  auto one = [&](const std::string& entry, const Bytes& data) { return st_file(R"({"w":)" + entry + "}", data); };
  const std::string ok = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  REQUIRE(load_error(one(ok, four)) == "no error");

  SUBCASE("file shorter than the 8-byte size") { CHECK_REFUSED(Bytes({1, 0, 0}), "expected at least 8 bytes"); }
  SUBCASE("header size above the 100 MB limit") {
    CHECK_REFUSED(st_file("{}", {}, 100000001), "exceeds the limit of 100000000 bytes");
  }
  SUBCASE("header size beyond the file") { CHECK_REFUSED(st_file("{}", {}, 40), "header size 40 in <bytes> lies beyond the file of 10 bytes"); }
  SUBCASE("header size of 2^64 - 1") { CHECK_REFUSED(st_file("{}", {}, ~std::uint64_t(0) - 1), "exceeds the limit"); }
  SUBCASE("JSON that does not parse") { CHECK_REFUSED(one(R"({"dtype":"F32",)", four), "invalid JSON"); }
  SUBCASE("header that is not UTF-8") { CHECK_REFUSED(st_file("{\"w\xff\":1}"), "invalid JSON"); }
  SUBCASE("header not an object") { CHECK_REFUSED(st_file("[1, 2]"), "expected a JSON object as the header of <bytes>, got array"); }
  SUBCASE("empty header") { CHECK_REFUSED(st_file(""), "invalid JSON"); }
  SUBCASE("nesting too deep") { CHECK_REFUSED(st_file(std::string(20, '[') + std::string(20, ']')), "nested deeper than 8"); }
  SUBCASE("entry not an object") { CHECK_REFUSED(one("[0, 4]", four), "expected an object {dtype, shape, data_offsets} for tensor 'w'"); }
  SUBCASE("missing dtype") { CHECK_REFUSED(one(R"({"shape":[1],"data_offsets":[0,4]})", four), "missing key 'dtype' for tensor 'w'"); }
  SUBCASE("missing shape") { CHECK_REFUSED(one(R"({"dtype":"F32","data_offsets":[0,4]})", four), "missing key 'shape' for tensor 'w'"); }
  SUBCASE("missing data_offsets") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[1]})", four), "missing key 'data_offsets' for tensor 'w'"); }
  SUBCASE("dtype not a string") { CHECK_REFUSED(one(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})", four), "expected a string 'dtype' for tensor 'w'"); }
  SUBCASE("unknown dtype") { CHECK_REFUSED(one(R"({"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]})", four), "unknown dtype 'F8_E4M3' for tensor 'w'"); }
  SUBCASE("lower-case dtype") { CHECK_REFUSED(one(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})", four), "unknown dtype 'f32' for tensor 'w'"); }
  SUBCASE("shape not an array") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":1,"data_offsets":[0,4]})", four), "expected an array 'shape' for tensor 'w'"); }
  SUBCASE("negative extent") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", four), "expected integers >= 0 in 'shape' of tensor 'w'"); }
  SUBCASE("fractional extent") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[1.0],"data_offsets":[0,4]})", four), "expected integers >= 0 in 'shape' of tensor 'w'"); }
  SUBCASE("extent beyond 2^64") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]})", four), "'shape' of tensor 'w'"); }
  SUBCASE("shape product overflows") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})", four), "of tensor 'w' in <bytes> overflows"); }
  SUBCASE("shape product overflows even with a zero later") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[18446744073709551615,0],"data_offsets":[0,0]})", {}), "tensor 'w' in <bytes> overflows"); }
  SUBCASE("data_offsets of one number") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4]})", four), "expected 'data_offsets' [begin, end] of two integers >= 0 for tensor 'w'"); }
  SUBCASE("negative data_offsets") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})", four), "for tensor 'w'"); }
  SUBCASE("data_offsets not an array") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[1],"data_offsets":"0-4"})", four), "for tensor 'w'"); }
  SUBCASE("begin > end") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})", four), "expected begin <= end in 'data_offsets' of tensor 'w'"); }
  SUBCASE("end beyond the buffer") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", four), "of tensor 'w' in <bytes> lie beyond the data buffer of 4 bytes"); }
  SUBCASE("offsets beyond 2^63") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]})", four), "tensor 'w'"); }
  SUBCASE("byte size does not match the shape") { CHECK_REFUSED(one(R"({"dtype":"F64","shape":[1],"data_offsets":[0,4]})", four), "expected 8 bytes for shape [1] of dtype F64 (tensor 'w'"); }
  SUBCASE("byte size does not match the dtype") { CHECK_REFUSED(one(R"({"dtype":"F16","shape":[1],"data_offsets":[0,4]})", four), "(tensor 'w' in <bytes>), got data_offsets [0,4] (4 bytes)"); }
  SUBCASE("overlapping tensors") {
    CHECK_REFUSED(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", Bytes(8)),
                  "tensor 'b' in <bytes> overlaps tensor 'a'");
  }
  SUBCASE("identical offsets") {
    CHECK_REFUSED(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", four),
                  "overlaps tensor 'a'");
  }
  SUBCASE("a hole before a tensor") {
    CHECK_REFUSED(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", Bytes(12)),
                  "hole of 4 bytes before tensor 'b'");
  }
  SUBCASE("a hole at the start") { CHECK_REFUSED(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})", Bytes(8)), "hole of 4 bytes before tensor 'w'"); }
  SUBCASE("bytes after the last tensor") { CHECK_REFUSED(one(ok, Bytes(6)), "cover the data buffer of 6 bytes in <bytes>, but they end at 4 (after tensor 'w')"); }
  SUBCASE("data but no tensors") { CHECK_REFUSED(st_file("{}", four), "cover the data buffer of 4 bytes"); }
  SUBCASE("duplicate tensor names") {
    CHECK_REFUSED(st_file(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"w":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", four),
                  "duplicate tensor name 'w'");
  }
  SUBCASE("duplicate key inside an entry") { CHECK_REFUSED(one(R"({"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]})", four), "duplicate key 'dtype' in the entry of tensor 'w'"); }
  SUBCASE("metadata not an object") { CHECK_REFUSED(st_file(R"({"__metadata__":["pt"]})"), "expected an object of strings for '__metadata__'"); }
  SUBCASE("metadata value not a string") { CHECK_REFUSED(st_file(R"({"__metadata__":{"format":1}})"), "got number for key 'format'"); }
  SUBCASE("duplicate metadata key") { CHECK_REFUSED(st_file(R"({"__metadata__":{"f":"a","f":"b"}})"), "duplicate key 'f' in the entry of tensor '__metadata__'"); }
}

TEST_CASE("core/safetensors: file errors name the path; accessors check dtype, rank and range") {
  const std::string missing = tmp("no_such_dir") + "/x.safetensors";
  CHECK_THROWS_WITH_AS(load_safetensors(missing), doctest::Contains(("weft::load_safetensors: cannot open " + missing).c_str()), IoError);
  CHECK_THROWS_WITH_AS(load_safetensors(fs::temp_directory_path().string()), doctest::Contains("weft::load_safetensors: cannot"), IoError);
  const std::string bad = tmp("bad.safetensors");
  {
    Bytes b = st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", Bytes(4));
    std::ofstream(bad, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
  CHECK_THROWS_WITH_AS(load_safetensors(bad), doctest::Contains(("tensor 'w' in " + bad).c_str()), IoError);
  CHECK_THROWS_WITH_AS(save_safetensors(missing, {}), doctest::Contains(("weft::save_safetensors: cannot open " + missing).c_str()), IoError);

  Bytes d;
  put(d, INT64_C(-1));
  d.push_back(2);  // a BOOL byte that is neither 0 nor 1
  Bytes u(8, 0xff);
  d.insert(d.end(), u.begin(), u.end());
  d.insert(d.end(), 4 * 5, 0);
  const std::string h = R"({"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"BOOL","shape":[],"data_offsets":[8,9]},)"
                        R"("u":{"dtype":"U64","shape":[1],"data_offsets":[9,17]},"r5":{"dtype":"F32","shape":[1,1,1,1,5],"data_offsets":[17,37]}})";
  Bytes b = st_file(h, d);
  SafetensorsFile f = load_safetensors_bytes(b.data(), b.size());
  CHECK(f.int64s("i") == std::vector<std::int64_t>{-1});
  CHECK(f.info("r5").shape.size() == 5);
  CHECK(f.data(f.info("i"))[0] == 0xff);
  CHECK_THROWS_WITH_AS(f.tensor<float>("i"), doctest::Contains("weft::SafetensorsFile::tensor: expected a floating-point dtype (F16, BF16, F32, F64) for tensor 'i'"), IoError);
  CHECK_THROWS_WITH_AS(f.int64s("r5"), doctest::Contains("expected an integer or BOOL dtype for tensor 'r5'"), IoError);
  CHECK_THROWS_WITH_AS(f.tensor<double>("r5"), doctest::Contains("expected rank <= 4 for tensor 'r5'"), IoError);
  CHECK_THROWS_WITH_AS(f.int64s("b"), doctest::Contains("expected BOOL bytes 0 or 1 in tensor 'b'"), IoError);
  CHECK_THROWS_WITH_AS(f.int64s("u"), doctest::Contains("U64 value 18446744073709551615 at element 0 of tensor 'u'"), IoError);
  CHECK_THROWS_WITH_AS(f.info("nope"), doctest::Contains("weft::SafetensorsFile::info: no tensor 'nope' in <bytes>"), IoError);
  CHECK_THROWS_AS(load_safetensors_bytes(nullptr, 3), IoError);
}

TEST_CASE("core/safetensors: the writer refuses bad entries before touching the file") {
  const std::string path = tmp("never.safetensors");
  Tensor<float> t = Tensor<float>::ones(Shape{2});
  auto fails = [&](const std::vector<SafetensorsEntry>& e, const std::map<std::string, std::string>& m, const char* part) {
    std::string msg;
    try {
      save_safetensors(path, e, m);
    } catch (const Error& ex) {
      msg = ex.what();
    }
    INFO(msg);
    CHECK(has(msg, "weft::save_safetensors: "));
    CHECK(has(msg, part));
    CHECK(!fs::exists(path));
  };
  fails({safetensors_entry("a", t), safetensors_entry("a", t)}, {}, "duplicate tensor name 'a'");
  fails({safetensors_entry("__metadata__", t)}, {}, "'__metadata__' is reserved");
  fails({safetensors_entry(std::string("bad\xc3"), t)}, {}, "expected a UTF-8 tensor name");
  fails({safetensors_entry(std::string("surrogate\xed\xa0\x80"), t)}, {}, "expected a UTF-8 tensor name");
  fails({}, {{"k", std::string("\xff")}}, "expected UTF-8 metadata");
  SafetensorsEntry short_bytes = safetensors_entry("s", t);
  short_bytes.bytes.pop_back();
  fails({short_bytes}, {}, "expected 8 bytes for 's' (2 elements of F32), got 7");
  CHECK_THROWS_AS(safetensors_entry("u", Tensor<float>()), ShapeError);
  CHECK_THROWS_AS(safetensors_entry("i", t, SafetensorsDtype::I32), ValueError);
}

}  // namespace weft_unit_core_safetensors_test
