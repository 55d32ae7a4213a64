// weft/ordinal/datasets.hpp - the two real ordinal data sets of weft's ordinal examples and
// tests, read from weft's data/ folder (data/README.md gives their provenance):
//
// load_housing           MASS::housing (Copenhagen housing satisfaction, 72 rows with a
//                        frequency weight): y = Sat (Low < Medium < High), x = R's treatment
//                        coding of Infl, Type, Cont (reference levels Low, Tower, Low), the
//                        design of polr(Sat ~ Infl + Type + Cont, weights = Freq).
// load_diabetes_ordinal  the diabetes data of Efron et al. (442 rows, 10 raw features) with
//                        the progression score cut at 100, 200, 300 into 4 ordered classes
//                        (counts 147 / 168 / 113 / 14: class 3 is rare, 3.2 %).
#pragma once

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "weft/core/data.hpp"
#include "weft/core/io/csv.hpp"

WEFT_NAMESPACE_BEGIN
namespace ordinal {

/// An ordinal table: features, classes 0..K-1, optional frequency weights and names.
template <class T>
struct OrdinalTable {
  Tensor<T> x;
  std::vector<int> y;
  std::vector<double> weights;  ///< empty: every row counts once
  std::vector<std::string> feature_names, class_names;
};

namespace detail {
inline int level_of(const std::string& v, const std::vector<std::string>& levels, const std::string& path,
                    index_t line) {
  for (std::size_t i = 0; i < levels.size(); ++i)
    if (levels[i] == v) return int(i);
  ::weft::detail::fail(ErrorKind::io, "ordinal::load_housing", "expected a known level in ", path, " line ", line,
                       ", got \"", v, "\"");
}
}  // namespace detail

/// MASS::housing from `path` (default data/housing.csv): 72 rows, 6 dummy features.
template <class T>
OrdinalTable<T> load_housing(const std::string& path = data_path("housing.csv")) {
  const char* fn = "ordinal::load_housing";
  std::ifstream in(path);
  WEFT_CHECK(in.is_open(), io, fn, "cannot open ", path, " for reading");
  const std::vector<std::string> sat = {"Low", "Medium", "High"}, infl = {"Low", "Medium", "High"},
                                 type = {"Tower", "Apartment", "Atrium", "Terrace"}, cont = {"Low", "High"};
  OrdinalTable<T> t;
  t.class_names = sat;
  t.feature_names = {"InflMedium", "InflHigh", "TypeApartment", "TypeAtrium", "TypeTerrace", "ContHigh"};
  std::vector<std::vector<double>> rows;
  std::string line;
  index_t ln = 0;
  while (std::getline(in, line)) {
    ++ln;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || ln == 1) continue;  // header
    std::vector<std::string> f(1);
    for (char c : line) {
      if (c == ',') f.emplace_back();
      else if (c != '"') f.back() += c;
    }
    WEFT_CHECK(f.size() == 5, io, fn, "expected 5 fields (Sat, Infl, Type, Cont, Freq) in ", path, " line ", ln,
               ", got ", f.size());
    const int s = detail::level_of(f[0], sat, path, ln), i = detail::level_of(f[1], infl, path, ln);
    const int ty = detail::level_of(f[2], type, path, ln), c = detail::level_of(f[3], cont, path, ln);
    char* end = nullptr;
    const double freq = std::strtod(f[4].c_str(), &end);
    WEFT_CHECK(end != f[4].c_str() && *end == '\0' && freq >= 0, io, fn, "expected a count >= 0 in ", path, " line ",
               ln, ", got \"", f[4], "\"");
    t.y.push_back(s);
    t.weights.push_back(freq);
    rows.push_back({double(i == 1), double(i == 2), double(ty == 1), double(ty == 2), double(ty == 3), double(c == 1)});
  }
  WEFT_CHECK(rows.size() == 72, io, fn, "expected 72 data rows in ", path, ", got ", rows.size());
  t.x = Tensor<T>(Shape{index_t(rows.size()), 6});
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (index_t j = 0; j < 6; ++j) t.x(index_t(r), j) = T(rows[r][std::size_t(j)]);
  return t;
}

/// The diabetes data with y = #{c in (100, 200, 300) : progression >= c} (classes 0..3) and
/// x = the 10 raw features (age, sex, bmi, bp, s1..s6), from the space-separated files
/// `features` and `target` (defaults: data/diabetes_data_raw.csv, data/diabetes_target.csv).
template <class T>
OrdinalTable<T> load_diabetes_ordinal(const std::string& features = data_path("diabetes_data_raw.csv"),
                                      const std::string& target = data_path("diabetes_target.csv")) {
  const char* fn = "ordinal::load_diabetes_ordinal";
  CsvOptions o;
  o.whitespace = true;
  OrdinalTable<T> t;
  t.x = read_csv<T>(features, o);
  const Tensor<double> tg = read_csv<double>(target, o);
  WEFT_CHECK(t.x.dim(0) == 442 && t.x.dim(1) == 10, io, fn, "expected 442 x 10 features in ", features, ", got ",
             t.x.shape());
  WEFT_CHECK(tg.numel() == 442, io, fn, "expected 442 targets in ", target, ", got ", tg.numel());
  for (index_t i = 0; i < 442; ++i) {
    const double v = tg.flat(i);
    t.y.push_back(int(v >= 100) + int(v >= 200) + int(v >= 300));
  }
  t.feature_names = {"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"};
  t.class_names = {"<100", "100-199", "200-299", ">=300"};
  return t;
}

}  // namespace ordinal
WEFT_NAMESPACE_END
