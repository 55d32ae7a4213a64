// examples/common/report.hpp - the one results-row format of scripts/reproduce (DESIGN.md, "The
// main job"), shared by every example, plus small helpers for seeds, timing and series files.
//
// A row is printed to stdout as a Markdown table row
//   | experiment | claim | metric | value | bound | verdict | seeds | seconds |
// and, when the environment variable WEFT_REPORT_CSV names a file, appended to it as CSV.
// verdict is "holds" or "fails" for asserted rows and "report" for rows printed only.
// Series for figures go to $WEFT_FIGURE_DATA (default: figure-data/ in the working directory).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace weft_examples {

struct Row {
  std::string experiment;  ///< short id, e.g. "core/mlp_digits"
  std::string claim;       ///< the paper's claim or the target, in words
  std::string metric;      ///< what value measures
  double value = 0;
  std::string bound;       ///< e.g. ">= 0.96"; empty for report rows
  bool asserted = true;    ///< false: verdict "report"
  bool holds = true;       ///< for asserted rows
  int seeds = 1;
  double seconds = 0;
};

/// A row with every field given; asserted = false makes it a report row (holds is then unused).
inline Row make_row(std::string experiment, std::string claim, std::string metric, double value, std::string bound,
                    bool asserted, bool holds, int seeds, double seconds) {
  Row r;
  r.experiment = std::move(experiment);
  r.claim = std::move(claim);
  r.metric = std::move(metric);
  r.value = value;
  r.bound = std::move(bound);
  r.asserted = asserted;
  r.holds = holds;
  r.seeds = seeds;
  r.seconds = seconds;
  return r;
}

inline std::string verdict(const Row& r) { return !r.asserted ? "report" : (r.holds ? "holds" : "fails"); }

inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

/// Prints the row (Markdown) and appends it to $WEFT_REPORT_CSV. Returns whether it passed.
inline bool emit(const Row& r) {
  std::printf("| %s | %s | %s | %.4g | %s | %s | %d | %.1f |\n", r.experiment.c_str(), r.claim.c_str(),
              r.metric.c_str(), r.value, r.bound.empty() ? "-" : r.bound.c_str(), verdict(r).c_str(), r.seeds,
              r.seconds);
  std::fflush(stdout);
  if (const char* path = std::getenv("WEFT_REPORT_CSV")) {
    std::ofstream f(path, std::ios::app);
    char num[64];
    std::snprintf(num, sizeof num, "%.6g", r.value);
    f << csv_field(r.experiment) << ',' << csv_field(r.claim) << ',' << csv_field(r.metric) << ',' << num << ','
      << csv_field(r.bound) << ',' << verdict(r) << ',' << r.seeds << ',' << r.seconds << '\n';
  }
  return !r.asserted || r.holds;
}

/// Command-line flags shared by the examples: --quick (fewer seeds: `quick_seeds`), --seeds N and
/// --first-seed S (seeds S, S + 1, ..., S + N - 1; default `default_first_seed`).
struct Args {
  bool quick = false;
  int seeds = 3;
  int first_seed = 0;
  Args(int argc, char** argv, int default_seeds = 3, int quick_seeds = 1, int default_first_seed = 0)
      : seeds(default_seeds), first_seed(default_first_seed) {
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--quick")) quick = true;
      else if (!std::strcmp(argv[i], "--seeds") && i + 1 < argc) seeds = std::atoi(argv[++i]);
      else if (!std::strcmp(argv[i], "--first-seed") && i + 1 < argc) first_seed = std::atoi(argv[++i]);
    }
    if (quick) seeds = quick_seeds;
    if (seeds < 1) seeds = 1;
  }
};

class Stopwatch {
 public:
  double seconds() const { return std::chrono::duration<double>(clock::now() - t0_).count(); }

 private:
  using clock = std::chrono::steady_clock;
  clock::time_point t0_ = clock::now();
};

/// A CSV file for a figure series under $WEFT_FIGURE_DATA (default ./figure-data).
inline std::ofstream series_file(const std::string& name, const std::string& header) {
  const char* env = std::getenv("WEFT_FIGURE_DATA");
  std::filesystem::path dir = env ? env : "figure-data";
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / name);
  f << header << '\n';
  return f;
}

inline double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
inline double max_of(const std::vector<double>& v) {
  double m = v.empty() ? 0 : v[0];
  for (double x : v) m = x > m ? x : m;
  return m;
}
inline double min_of(const std::vector<double>& v) {
  double m = v.empty() ? 0 : v[0];
  for (double x : v) m = x < m ? x : m;
  return m;
}

}  // namespace weft_examples
