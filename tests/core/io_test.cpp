// Tests of weft/core/io/csv.hpp, weft/core/io/npy.hpp and weft/core/data.hpp: parsing,
// round trips, hand-made NumPy files, every error path, the digits data set and its split.
#include <doctest/doctest.h>

#include <chrono>
#include <complex>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/data.hpp"
#include "weft/core/io/csv.hpp"
#include "weft/core/io/npy.hpp"

namespace weft_unit_core_io_test {

namespace fs = std::filesystem;
using weft::index_t;
using weft::Shape;
using weft::Tensor;

namespace {

std::string tmp(const std::string& name) { return weft::test::temp_path(name); }

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

template <class V>
std::string bytes_of(const std::vector<V>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(V));
}

// A .npy file as NumPy writes it: magic, version, header length, the dict padded with spaces
// so the data starts at a multiple of 64, '\n', then the data.
std::string npy_file(const std::string& dict, const std::string& data = "", int major = 1,
                     int minor = 0) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string h = dict;
  h.append((64 - (prefix + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += char(major);
  out += char(minor);
  for (std::size_t k = 0; k < prefix - 8; ++k) out += char((h.size() >> (8 * k)) & 0xff);
  return out + h + data;
}

// The message of the weft::Error that f throws ("" if it throws nothing).
template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const weft::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

template <class T>
Tensor<T> random_tensor(const Shape& s, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, 1e3);
  Tensor<T> t(s);
  for (index_t i = 0; i < t.numel(); ++i) {
    if constexpr (weft::is_complex_v<T>)
      t.flat(i) = T(weft::real_t<T>(dist(gen)), weft::real_t<T>(dist(gen)));
    else
      t.flat(i) = T(dist(gen));
  }
  return t;
}

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() &&
         (a.numel() == 0 ||
          std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.numel())) == 0);
}

void set_env(const char* name, const char* value) {
#ifdef _WIN32
  _putenv_s(name, value ? value : "");
#else
  if (value)
    setenv(name, value, 1);
  else
    unsetenv(name);
#endif
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// csv

TEST_CASE("core/io: csv parses a comma-separated table") {
  std::istringstream in("1,2,3\n4.5,-6e-1,0x10\n");
  Tensor<double> t = weft::read_csv_stream<double>(in);
  REQUIRE(t.shape() == Shape{2, 3});
  CHECK(t(0, 0) == 1.0);
  CHECK(t(1, 0) == 4.5);
  CHECK(t(1, 1) == -0.6);
  CHECK(t(1, 2) == 16.0);

  write_file(tmp("plain.csv"), "0.1,2\n3,4\n");
  Tensor<float> f = weft::read_csv<float>(tmp("plain.csv"));
  REQUIRE(f.shape() == Shape{2, 2});
  CHECK(f(0, 0) == 0.1f);
  CHECK(f(1, 1) == 4.0f);
}

TEST_CASE("core/io: csv skips the header line and blank lines") {
  std::istringstream in("\n  \nx,y\n1,2\n\n3,4\n \t\n");
  weft::CsvOptions opts;
  opts.header = true;
  Tensor<double> t = weft::read_csv_stream<double>(in, opts);
  REQUIRE(t.shape() == Shape{2, 2});
  CHECK(t(1, 0) == 3.0);
  CHECK(t(1, 1) == 4.0);
}

TEST_CASE("core/io: csv whitespace mode splits on runs of spaces and tabs") {
  std::istringstream in("  1   2\t\t3 \n4 \t 5 6\n");
  weft::CsvOptions opts;
  opts.whitespace = true;
  Tensor<double> t = weft::read_csv_stream<double>(in, opts);
  REQUIRE(t.shape() == Shape{2, 3});
  CHECK(t(0, 2) == 3.0);
  CHECK(t(1, 1) == 5.0);
}

TEST_CASE("core/io: csv handles CRLF line ends, other delimiters and spaces around fields") {
  std::istringstream crlf("1,2\r\n3,4\r\n\r\n");
  Tensor<double> t = weft::read_csv_stream<double>(crlf);
  REQUIRE(t.shape() == Shape{2, 2});
  CHECK(t(1, 1) == 4.0);

  std::istringstream semi(" 1 ; 2\t\n3;4 ");  // no final line break
  weft::CsvOptions opts;
  opts.delimiter = ';';
  Tensor<double> s = weft::read_csv_stream<double>(semi, opts);
  REQUIRE(s.shape() == Shape{2, 2});
  CHECK(s(0, 1) == 2.0);
  CHECK(s(1, 1) == 4.0);
}

TEST_CASE("core/io: csv accepts nan and inf as strtod parses them") {
  std::istringstream in("nan,inf,-Infinity,NAN\n");
  Tensor<double> t = weft::read_csv_stream<double>(in);
  CHECK(std::isnan(t(0, 0)));
  CHECK(t(0, 1) == std::numeric_limits<double>::infinity());
  CHECK(t(0, 2) == -std::numeric_limits<double>::infinity());
  CHECK(std::isnan(t(0, 3)));
}

TEST_CASE("core/io: csv error: file cannot be opened") {
  const std::string path = tmp("does_not_exist.csv");
  CHECK_THROWS_AS(weft::read_csv<double>(path), weft::IoError);
  const std::string m = message_of([&] { weft::read_csv<double>(path); });
  CHECK(contains(m, "weft::read_csv: cannot open"));
  CHECK(contains(m, "does_not_exist.csv"));
}

TEST_CASE("core/io: csv error: no data rows") {
  write_file(tmp("empty.csv"), "");
  write_file(tmp("blank.csv"), "\n \r\n\t\n");
  write_file(tmp("header_only.csv"), "a,b,c\n");
  for (const char* name : {"empty.csv", "blank.csv", "header_only.csv"}) {
    CAPTURE(name);
    weft::CsvOptions opts;
    opts.header = std::string(name) == "header_only.csv";
    CHECK_THROWS_AS(weft::read_csv<double>(tmp(name), opts), weft::IoError);
    const std::string m = message_of([&] { weft::read_csv<double>(tmp(name), opts); });
    CHECK(contains(m, "weft::read_csv: expected at least one data row"));
    CHECK(contains(m, name));
  }
}

TEST_CASE("core/io: csv error: a field that is not a number") {
  write_file(tmp("nan_field.csv"), "1,2,3\n\n4,abc,6\n");
  CHECK_THROWS_AS(weft::read_csv<double>(tmp("nan_field.csv")), weft::IoError);
  std::string m = message_of([&] { weft::read_csv<double>(tmp("nan_field.csv")); });
  CHECK(contains(m, "weft::read_csv"));
  CHECK(contains(m, "line 3, column 2"));
  CHECK(contains(m, "nan_field.csv"));
  CHECK(contains(m, "\"abc\""));

  std::istringstream empty_field("1,,3\n");
  m = message_of([&] { weft::read_csv_stream<double>(empty_field, {}, "mem"); });
  CHECK(
      contains(m, "weft::read_csv_stream: expected a number at line 1, column 2 of mem, got \"\""));

  std::istringstream partial("1,2.5x\n");  // strtod would stop after "2.5"
  CHECK_THROWS_WITH_AS(weft::read_csv_stream<float>(partial), doctest::Contains("got \"2.5x\""),
                       weft::IoError);
}

TEST_CASE("core/io: csv error: ragged rows") {
  std::string text;
  for (int i = 0; i < 16; ++i) text += "1,2,3\n";
  text += "1,2\n";
  write_file(tmp("ragged.csv"), text);
  CHECK_THROWS_AS(weft::read_csv<double>(tmp("ragged.csv")), weft::IoError);
  const std::string m = message_of([&] { weft::read_csv<double>(tmp("ragged.csv")); });
  CHECK(contains(m, "weft::read_csv: expected 3 fields (as on line 1), got 2 on line 17"));
  CHECK(contains(m, "ragged.csv"));

  std::istringstream longer("\n1 2\n1 2 3\n");
  weft::CsvOptions ws;
  ws.whitespace = true;
  CHECK_THROWS_WITH_AS(weft::read_csv_stream<double>(longer, ws),
                       doctest::Contains("expected 2 fields (as on line 2), got 3 on line 3"),
                       weft::IoError);
}

TEST_CASE("core/io: csv write/read round trip keeps every bit") {
  Tensor<double> t = random_tensor<double>(Shape{7, 5}, 1);
  t(0, 0) = 0.1;
  t(0, 1) = -1e-310;  // subnormal
  t(0, 2) = std::numeric_limits<double>::max();
  t(0, 3) = std::numeric_limits<double>::infinity();
  t(0, 4) = -std::numeric_limits<double>::infinity();
  weft::write_csv(tmp("rt.csv"), t);
  CHECK(same_bits(weft::read_csv<double>(tmp("rt.csv")), t));

  Tensor<float> f = random_tensor<float>(Shape{4, 3}, 2);
  f(1, 1) = std::numeric_limits<float>::quiet_NaN();
  weft::write_csv(tmp("rt_f.csv"), f, {"a", "b", "c"});
  CHECK(read_file(tmp("rt_f.csv")).rfind("a,b,c\n", 0) == 0);
  weft::CsvOptions opts;
  opts.header = true;
  Tensor<float> g = weft::read_csv<float>(tmp("rt_f.csv"), opts);
  REQUIRE(g.shape() == f.shape());
  CHECK(std::isnan(g(1, 1)));
  g(1, 1) = f(1, 1) = 0.0f;
  CHECK(same_bits(g, f));

  Tensor<double> v = Tensor<double>::vector_of({1.5, -2.25, 3e100});
  weft::write_csv(tmp("rt_v.csv"), v);
  CHECK(same_bits(weft::read_csv<double>(tmp("rt_v.csv")), v.reshape({3, 1})));
}

TEST_CASE("core/io: csv write checks rank, header and the path") {
  Tensor<double> t(Shape{2, 3});
  CHECK_THROWS_AS(weft::write_csv(tmp("w.csv"), Tensor<double>(Shape{2, 2, 2})), weft::ShapeError);
  CHECK_THROWS_AS(weft::write_csv(tmp("w.csv"), Tensor<double>::scalar(1.0)), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::write_csv(tmp("w.csv"), t, {"a", "b"}),
                       "weft::write_csv: expected 3 header names (one per column), got 2",
                       weft::ShapeError);
  CHECK_THROWS_AS(weft::write_csv(tmp("w.csv"), t, {"a", "b,c", "d"}), weft::ValueError);
  CHECK_THROWS_WITH_AS(weft::write_csv(tmp("no_such_dir/w.csv"), t),
                       doctest::Contains("weft::write_csv: cannot open"), weft::IoError);
}

// ---------------------------------------------------------------------------------------------
// npy

TEST_CASE_TEMPLATE("core/io: npy round trip for ranks 0..4 and empty arrays", T, float, double,
                   std::complex<float>, std::complex<double>) {
  const Shape shapes[] = {Shape{},           Shape{5}, Shape{2, 3},   Shape{2, 3, 4},
                          Shape{2, 1, 3, 2}, Shape{0}, Shape{2, 0, 3}};
  unsigned seed = 10;
  for (const Shape& s : shapes) {
    CAPTURE(s);
    const std::string path = tmp("rt.npy");
    Tensor<T> t = random_tensor<T>(s, seed++);
    weft::save_npy(path, t);
    Tensor<T> u = weft::load_npy<T>(path);
    CHECK(same_bits(u, t));
    const weft::NpyInfo info = weft::npy_info(path);
    CHECK(info.dtype == weft::detail::npy_descr<T>());
    CHECK(info.shape == s);
    CHECK_FALSE(info.fortran_order);
    CHECK(info.major_version == 1);
    const std::string bytes = read_file(path);
    const std::size_t hlen =
        std::size_t(std::uint8_t(bytes[8])) | std::size_t(std::uint8_t(bytes[9])) << 8;
    CHECK((10 + hlen) % 64 == 0);
    CHECK(bytes[10 + hlen - 1] == '\n');
    CHECK(bytes.size() == 10 + hlen + sizeof(T) * std::size_t(s.numel()));
  }
}

TEST_CASE("core/io: npy header is written as NumPy writes it") {
  Tensor<double> t = Tensor<double>::from_values({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  weft::save_npy(tmp("h.npy"), t);
  const std::string bytes = read_file(tmp("h.npy"));
  const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
  CHECK(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(bytes.substr(10, dict.size()) == dict);
  CHECK(bytes == npy_file(dict, bytes_of(std::vector<double>{1, 2, 3, 4, 5, 6})));

  weft::save_npy(tmp("h1.npy"), Tensor<float>::vector_of({1.0f}));
  CHECK(contains(read_file(tmp("h1.npy")), "'shape': (1,), }"));
  weft::save_npy(tmp("h0.npy"), Tensor<std::complex<float>>::scalar({1.0f, 2.0f}));
  CHECK(contains(read_file(tmp("h0.npy")),
                 "{'descr': '<c8', 'fortran_order': False, 'shape': (), }"));
}

TEST_CASE("core/io: npy reads hand-made NumPy bytes") {
  const std::vector<double> v = {1.5, -2, 3, 4, 5, 6.25};
  write_file(tmp("m1.npy"),
             npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", bytes_of(v)));
  Tensor<double> a = weft::load_npy<double>(tmp("m1.npy"));
  REQUIRE(a.shape() == Shape{2, 3});
  CHECK(a(0, 0) == 1.5);
  CHECK(a(1, 2) == 6.25);

  // version 2.0, keys in another order, double quotes, NumPy's growth padding, no trailing comma
  const std::vector<float> f = {1, 2, 3};
  write_file(tmp("m2.npy"), npy_file("{\"shape\": (3,), \"fortran_order\": False, \"descr\": "
                                     "\"<f4\"}                      ",
                                     bytes_of(f), 2));
  Tensor<float> b = weft::load_npy<float>(tmp("m2.npy"));
  REQUIRE(b.shape() == Shape{3});
  CHECK(b(2) == 3.0f);
  CHECK(weft::npy_info(tmp("m2.npy")).major_version == 2);

  // version 3.0 (utf-8 header), Python 2 longs, a rank-0 array and an empty one
  const std::vector<std::complex<double>> c = {{1, 2}, {3, 4}, {5, 6}, {7, 8}};
  write_file(
      tmp("m3.npy"),
      npy_file("{'descr': '<c16', 'fortran_order': False, 'shape': (2L, 2L), }", bytes_of(c), 3));
  Tensor<std::complex<double>> z = weft::load_npy<std::complex<double>>(tmp("m3.npy"));
  REQUIRE(z.shape() == Shape{2, 2});
  CHECK(z(1, 0) == std::complex<double>(5, 6));
  write_file(tmp("m4.npy"), npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
                                     bytes_of(std::vector<double>{7})));
  CHECK(weft::load_npy<double>(tmp("m4.npy")).item() == 7.0);
  write_file(tmp("m5.npy"),
             npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4), }"));
  CHECK(weft::load_npy<double>(tmp("m5.npy")).shape() == Shape{0, 4});
}

namespace {
// Writes `bytes` to a temp file and returns the message load_npy<double> fails with.
std::string npy_error(const std::string& name, const std::string& bytes) {
  write_file(tmp(name), bytes);
  CHECK_THROWS_AS(weft::load_npy<double>(tmp(name)), weft::IoError);
  return message_of([&] { weft::load_npy<double>(tmp(name)); });
}
const std::string f8_23 = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
}  // namespace

TEST_CASE("core/io: npy error: cannot open, bad magic, unsupported version, truncated header") {
  CHECK_THROWS_WITH_AS(weft::load_npy<double>(tmp("none.npy")),
                       doctest::Contains("weft::load_npy: cannot open"), weft::IoError);
  CHECK_THROWS_WITH_AS(weft::npy_info(tmp("none.npy")),
                       doctest::Contains("weft::npy_info: cannot open"), weft::IoError);
  std::string m = npy_error("magic.npy", "1,2,3\n4,5,6\n");
  CHECK(contains(m, "weft::load_npy: expected a .npy file starting with"));
  CHECK(contains(m, "got \"1,2,3\\x0a\""));
  CHECK(contains(npy_error("zero.npy", ""), "got no bytes (empty or unreadable file)"));
  std::string v4 = npy_file(f8_23, std::string(48, '\0'));
  v4[6] = 4;
  CHECK(contains(npy_error("v4.npy", v4), "unsupported .npy format version 4.0"));
  std::string v11 = npy_file(f8_23, std::string(48, '\0'));
  v11[7] = 1;
  CHECK(contains(npy_error("v11.npy", v11), "unsupported .npy format version 1.1"));
  CHECK(contains(npy_error("short.npy", std::string("\x93NUMPY\x01", 7)), "truncated header"));
  m = npy_error("cut_header.npy", npy_file(f8_23).substr(0, 40));
  CHECK(contains(m, "truncated header"));
  CHECK(contains(m, "expected 118 header bytes, got 30"));
}

TEST_CASE("core/io: npy error: malformed header dict") {
  const std::string data(48, '\0');
  std::string m =
      npy_error("no_descr.npy", npy_file("{'fortran_order': False, 'shape': (2, 3), }", data));
  CHECK(contains(m, "weft::load_npy: malformed .npy header"));
  CHECK(contains(m, "missing key 'descr'"));
  CHECK(contains(npy_error("no_order.npy", npy_file("{'descr': '<f8', 'shape': (2, 3), }", data)),
                 "missing key 'fortran_order'"));
  CHECK(contains(
      npy_error("no_shape.npy", npy_file("{'descr': '<f8', 'fortran_order': False}", data)),
      "missing key 'shape'"));
  CHECK(contains(npy_error("extra.npy", npy_file("{'descr': '<f8', 'fortran_order': False, "
                                                 "'shape': (2, 3), 'x': 1}",
                                                 data)),
                 "unexpected key 'x'"));
  CHECK(contains(npy_error("bool.npy", npy_file("{'descr': '<f8', 'fortran_order': maybe, "
                                                "'shape': (2, 3)}",
                                                data)),
                 "expected True or False"));
  CHECK(contains(npy_error("neg.npy", npy_file("{'descr': '<f8', 'fortran_order': False, "
                                               "'shape': (-2, 3)}",
                                               data)),
                 "expected a non-negative integer in 'shape'"));
  CHECK(contains(npy_error("nodict.npy", npy_file("descr", data)), "expected '{' at the start"));
  CHECK(contains(npy_error("tail.npy", npy_file(f8_23 + " junk", data)),
                 "unexpected text after the dict"));
  CHECK(contains(npy_error("unterminated.npy", npy_file("{'descr: '<f8'", data)),
                 "malformed .npy header"));
}

TEST_CASE("core/io: npy error: unsupported dtypes name the dtype and the supported ones") {
  for (const char* d : {"<i4", "|b1", "<f2", "|u1", "<U3"}) {
    CAPTURE(d);
    const std::string m = npy_error(
        "dtype.npy",
        npy_file(std::string("{'descr': '") + d + "', 'fortran_order': False, 'shape': (2,), }",
                 std::string(8, '\0')));
    CHECK(contains(m, std::string("unsupported dtype '") + d + "'"));
    CHECK(contains(m, "'<f4', '<f8', '<c8', '<c16'"));
  }
  const std::string m = npy_error("be.npy", npy_file("{'descr': '>f8', 'fortran_order': False, "
                                                     "'shape': (2, 3), }",
                                                     std::string(48, '\0')));
  CHECK(contains(m, "big-endian dtype '>f8'"));
  CHECK(contains(m, "'<f4', '<f8', '<c8', '<c16'"));
  CHECK(contains(npy_error("struct.npy", npy_file("{'descr': [('a', '<f4')], 'fortran_order': "
                                                  "False, 'shape': (2,), }",
                                                  std::string(8, '\0'))),
                 "structured dtypes are not supported"));
  // npy_info reports what is there without judging the dtype
  CHECK(weft::npy_info(tmp("be.npy")).dtype == ">f8");
}

TEST_CASE("core/io: npy error: fortran order, rank > 4, truncated and trailing data") {
  std::string m = npy_error("fortran.npy", npy_file("{'descr': '<f8', 'fortran_order': True, "
                                                    "'shape': (2, 3), }",
                                                    std::string(48, '\0')));
  CHECK(contains(m, "fortran_order True"));
  CHECK(weft::npy_info(tmp("fortran.npy")).fortran_order);
  m = npy_error("rank5.npy", npy_file("{'descr': '<f8', 'fortran_order': False, "
                                      "'shape': (1, 1, 1, 1, 2), }",
                                      std::string(16, '\0')));
  CHECK(contains(m, "expected an array of rank 0..4"));
  CHECK(contains(m, "got shape (1, 1, 1, 1, 2)"));
  m = npy_error("trunc.npy", npy_file(f8_23, std::string(40, '\0')));
  CHECK(contains(m, "truncated data"));
  CHECK(contains(m, "expected 48 bytes for shape (2, 3) of dtype '<f8', got 40"));
  m = npy_error("trailing.npy", npy_file(f8_23, std::string(56, '\0')));
  CHECK(contains(m, "expected 48 data bytes"));
  CHECK(contains(m, "got 56 (8 trailing bytes)"));
  CHECK(contains(npy_error("huge.npy", npy_file("{'descr': '<f8', 'fortran_order': False, "
                                                "'shape': (99999999999999, 99999999999999), }")),
                 "too large"));
}

TEST_CASE("core/io: npy dtype must match T unless convert is set") {
  const std::vector<float> f = {1.5f, -2.0f, 3.25f};
  write_file(tmp("f4.npy"),
             npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", bytes_of(f)));
  const std::string m = message_of([&] { weft::load_npy<double>(tmp("f4.npy")); });
  CHECK(contains(m, "weft::load_npy: expected dtype '<f8' for Tensor<double>, got '<f4'"));
  CHECK(contains(m, "convert = true"));
  weft::NpyLoadOptions conv;
  conv.convert = true;
  Tensor<double> d = weft::load_npy<double>(tmp("f4.npy"), conv);
  CHECK(d(0) == 1.5);
  CHECK(d(2) == 3.25);
  Tensor<std::complex<float>> zc = weft::load_npy<std::complex<float>>(tmp("f4.npy"), conv);
  CHECK(zc(1) == std::complex<float>(-2.0f, 0.0f));

  const std::vector<std::int64_t> ints = {-3, 0, 1 << 20};
  write_file(tmp("i8.npy"),
             npy_file("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", bytes_of(ints)));
  CHECK_THROWS_AS(weft::load_npy<float>(tmp("i8.npy")), weft::IoError);
  Tensor<float> fi = weft::load_npy<float>(tmp("i8.npy"), conv);
  CHECK(fi(0) == -3.0f);
  CHECK(fi(2) == float(1 << 20));

  Tensor<std::complex<float>> c8 =
      random_tensor<std::complex<float>>(Shape{9000}, 3);  // > one chunk
  weft::save_npy(tmp("c8.npy"), c8);
  Tensor<std::complex<double>> c16 = weft::load_npy<std::complex<double>>(tmp("c8.npy"), conv);
  CHECK(c16(8999) == std::complex<double>(c8(8999)));
  CHECK_THROWS_WITH_AS(weft::load_npy<double>(tmp("c8.npy"), conv),
                       doctest::Contains("cannot convert complex dtype '<c8'"), weft::IoError);
  Tensor<double> f8 = random_tensor<double>(Shape{2, 2}, 4);
  weft::save_npy(tmp("f8.npy"), f8);
  CHECK(weft::load_npy<float>(tmp("f8.npy"), conv)(1, 1) == float(f8(1, 1)));
}

TEST_CASE("core/io: npy int64 round trip") {
  weft::Int64Array a;
  a.shape = Shape{2, 3};
  a.values = {
      -1, 0, 1, std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(),
      42};
  weft::save_npy(tmp("i8rt.npy"), a);
  CHECK(weft::npy_info(tmp("i8rt.npy")).dtype == "<i8");
  weft::Int64Array b = weft::load_npy_int64(tmp("i8rt.npy"));
  CHECK(b.shape == a.shape);
  CHECK(b.values == a.values);

  weft::Int64Array s;
  s.values = {7};  // rank 0
  weft::save_npy(tmp("i8s.npy"), s);
  CHECK(weft::load_npy_int64(tmp("i8s.npy")).values == std::vector<std::int64_t>{7});

  weft::Int64Array bad;
  bad.shape = Shape{4};
  bad.values = {1, 2};
  CHECK_THROWS_AS(weft::save_npy(tmp("bad.npy"), bad), weft::ShapeError);
  weft::save_npy(tmp("f8.npy"), Tensor<double>(Shape{2}));
  CHECK_THROWS_WITH_AS(weft::load_npy_int64(tmp("f8.npy")),
                       doctest::Contains("weft::load_npy_int64: expected dtype '<i8'"),
                       weft::IoError);
  write_file(tmp("i8trunc.npy"), read_file(tmp("i8rt.npy")).substr(0, 128 + 40));
  CHECK_THROWS_WITH_AS(weft::load_npy_int64(tmp("i8trunc.npy")),
                       doctest::Contains("expected 48 bytes for shape (2, 3)"), weft::IoError);
}

TEST_CASE("core/io: npy from a stream reads the same bytes as from a file") {
  Tensor<double> a(Shape{2, 3});
  for (index_t i = 0; i < 6; ++i) a.data()[i] = 0.25 * double(i) - 1;
  weft::save_npy(tmp("stream.npy"), a);
  std::istringstream in(read_file(tmp("stream.npy")), std::ios::binary);
  Tensor<double> b = weft::load_npy_stream<double>(in);
  CHECK(b.shape() == a.shape());
  CHECK(std::memcmp(a.data(), b.data(), 6 * sizeof(double)) == 0);
  std::istringstream bad("not a numpy file");
  CHECK_THROWS_WITH_AS(weft::load_npy_stream<double>(bad, {}, "packet 7"),
                       doctest::Contains("weft::load_npy_stream: expected a .npy file"),
                       weft::IoError);
  std::istringstream bad2("not a numpy file");
  CHECK_THROWS_WITH_AS(weft::load_npy_stream<double>(bad2, {}, "packet 7"),
                       doctest::Contains("packet 7"), weft::IoError);
  weft::Int64Array i8;
  i8.shape = Shape{3};
  i8.values = {-5, 0, 9};
  weft::save_npy(tmp("stream_i8.npy"), i8);
  std::istringstream in8(read_file(tmp("stream_i8.npy")), std::ios::binary);
  CHECK(weft::load_npy_int64_stream(in8).values == i8.values);
}

TEST_CASE("core/io: npy save checks its input and the path") {
  CHECK_THROWS_AS(weft::save_npy(tmp("u.npy"), Tensor<double>()), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::save_npy(tmp("no_such_dir/x.npy"), Tensor<double>(Shape{2})),
                       doctest::Contains("weft::save_npy: cannot open"), weft::IoError);
}

// ---------------------------------------------------------------------------------------------
// data

TEST_CASE_TEMPLATE("core/data: load_digits gives 1797 x 64 pixels and classes 0..9", T, float,
                   double) {
  weft::Dataset<T> d = weft::load_digits<T>();
  CHECK(d.size() == 1797);
  CHECK(d.features() == 64);
  REQUIRE(d.x.shape() == Shape{1797, 64});
  REQUIRE(d.y.size() == 1797);
  std::vector<int> counts(10, 0);
  for (int c : d.y) {
    REQUIRE((c >= 0 && c <= 9));
    ++counts[std::size_t(c)];
  }
  CHECK(counts == std::vector<int>{178, 182, 177, 183, 181, 182, 181, 179, 174, 180});
  int sum = 0;
  for (int c : counts) sum += c;
  CHECK(sum == 1797);
  CHECK(d.x.matrix().minCoeff() == T(0));
  CHECK(d.x.matrix().maxCoeff() == T(16));
  CHECK(d.x(0, 2) == T(5));  // first row: 0,0,5,13,9,1,... class 0
  CHECK(d.x(0, 3) == T(13));
  CHECK(d.y[0] == 0);
  CHECK(d.y[1] == 1);
}

TEST_CASE("core/data: split_mod(5, 0) gives 1437 train / 360 test rows") {
  weft::Dataset<double> d = weft::load_digits<double>(weft::data_path("digits.csv"));
  auto [train, test] = weft::split_mod(d, 5, 0);
  CHECK(train.size() == 1437);
  CHECK(test.size() == 360);
  CHECK(train.features() == 64);
  CHECK(test.y.size() == 360);
  for (index_t j = 0; j < test.size(); ++j) {
    CHECK(test.y[std::size_t(j)] == d.y[std::size_t(5 * j)]);
    CHECK(test.x.matrix().row(j) == d.x.matrix().row(5 * j));
  }
  CHECK(train.x.matrix().row(0) == d.x.matrix().row(1));
  CHECK(train.x.matrix().row(4) == d.x.matrix().row(6));
  std::vector<int> counts(10, 0);
  for (int c : test.y) ++counts[std::size_t(c)];
  CHECK(counts == std::vector<int>{42, 28, 26, 48, 38, 39, 30, 26, 36, 47});

  weft::Dataset<double> s = weft::subset(d, {3, 3, 0});
  REQUIRE(s.size() == 3);
  CHECK(s.x.matrix().row(1) == d.x.matrix().row(3));
  CHECK(s.y == std::vector<int>{d.y[3], d.y[3], d.y[0]});
  CHECK(weft::subset(d, {}).size() == 0);
}

TEST_CASE("core/data: split_mod and subset check their arguments") {
  weft::Dataset<float> d;
  d.x = Tensor<float>(Shape{6, 2});
  d.y = {0, 1, 2, 3, 4, 5};
  CHECK_THROWS_WITH_AS(weft::split_mod(d, 1, 0), "weft::split_mod: expected k >= 2, got 1",
                       weft::ValueError);
  CHECK_THROWS_AS(weft::split_mod(d, 3, 3), weft::ValueError);
  CHECK_THROWS_AS(weft::split_mod(d, 3, -1), weft::ValueError);
  CHECK(weft::split_mod(d, 3, 2).second.y == std::vector<int>{2, 5});
  CHECK_THROWS_WITH_AS(weft::subset(d, {0, 6}),
                       "weft::subset: expected row indices in [0, 6), got 6", weft::ShapeError);
  d.y.pop_back();
  CHECK_THROWS_WITH_AS(weft::subset(d, {0}), "weft::subset: expected one label per row (6), got 5",
                       weft::ShapeError);
  CHECK_THROWS_AS(weft::split_mod(weft::Dataset<float>{}, 2, 0), weft::ShapeError);
}

TEST_CASE("core/data: load_digits rejects malformed files") {
  std::string row64, row65;
  for (int i = 0; i < 64; ++i) row64 += (i ? "," : "") + std::to_string(i % 17);
  row65 = row64 + ",3\n";
  write_file(tmp("d64.csv"), row64 + "\n" + row64 + "\n");
  CHECK_THROWS_WITH_AS(
      weft::load_digits<double>(tmp("d64.csv")),
      doctest::Contains("weft::load_digits: expected 65 columns (64 pixels and the class)"),
      weft::IoError);
  write_file(tmp("d10.csv"), row65 + row64 + ",10\n");
  std::string m = message_of([&] { weft::load_digits<double>(tmp("d10.csv")); });
  CHECK(contains(m, "weft::load_digits: expected an integer class 0..9"));
  CHECK(contains(m, "got 10 in data row 2"));
  write_file(tmp("dfrac.csv"), row64 + ",2.5\n");
  CHECK_THROWS_WITH_AS(weft::load_digits<float>(tmp("dfrac.csv")),
                       doctest::Contains("got 2.5 in data row 1"), weft::IoError);
  write_file(tmp("dtext.csv"), row65 + row65 + row64 + ",x\n");
  CHECK_THROWS_WITH_AS(weft::load_digits<double>(tmp("dtext.csv")),
                       doctest::Contains("weft::read_csv: expected a number at line 3, column 65"),
                       weft::IoError);
  write_file(tmp("d2.csv"), row65 + row65);
  weft::Dataset<double> ok = weft::load_digits<double>(tmp("d2.csv"));
  CHECK(ok.size() == 2);
  CHECK(ok.y == std::vector<int>{3, 3});
}

TEST_CASE("core/data: data_path honours WEFT_DATA_DIR and names the places searched") {
  const char* old = std::getenv("WEFT_DATA_DIR");
  const std::string saved = old ? old : "";
  fs::create_directories(tmp("env_data"));
  write_file(tmp("env_data/digits.csv"), "1\n");
  set_env("WEFT_DATA_DIR", tmp("env_data").c_str());
  CHECK(fs::equivalent(weft::data_path("digits.csv"), tmp("env_data/digits.csv")));
  // a file missing from the env folder is still found in the compiled-in folder
  set_env("WEFT_DATA_DIR", tmp("empty_env").c_str());
  CHECK(fs::equivalent(weft::data_path("digits.csv"), fs::path(WEFT_DATA_DIR) / "digits.csv"));
  const std::string m = message_of([] { weft::data_path("no_such_file.csv"); });
  CHECK(contains(m, "weft::data_path: expected to find no_such_file.csv"));
  CHECK(contains(m, tmp("empty_env")));
  CHECK(contains(m, WEFT_DATA_DIR));
  CHECK(contains(m, "data/no_such_file.csv"));
  CHECK_THROWS_AS(weft::data_path("no_such_file.csv"), weft::IoError);
  set_env("WEFT_DATA_DIR", old ? saved.c_str() : nullptr);
  CHECK(fs::equivalent(weft::data_path("digits.csv"), fs::path(WEFT_DATA_DIR) / "digits.csv"));
}

}  // namespace weft_unit_core_io_test
