// examples/common/report.hpp - the one results-row format of scripts/reproduce (DESIGN.md, "The
// main job"), shared by every example, plus small helpers for seeds, timing and series files.
//
// A row is printed to stdout as a Markdown table row
//   | experiment | claim | metric | value | bound | verdict | seeds | seconds |
// and, when the environment variable WEFT_REPORT_CSV names a file, appended to it as CSV.
// verdict is "holds" or "fails" for asserted rows and "report" for rows printed only.
// Series for figures go to --out, else $WEFT_FIGURE_DATA, else figure-data/ in the working
// directory. Args is the command line every example shares.
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

#include <CLI/CLI.hpp>

#include "weft/core/parallel.hpp"

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

/// A table cell: '|' would end the cell, so it is escaped as Markdown wants (write abs() instead
/// in claims and metrics; this only keeps the table whole if one slips through).
inline std::string cell(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

/// Prints the row (Markdown) and appends it to $WEFT_REPORT_CSV. Returns whether it passed.
inline bool emit(const Row& r) {
  std::printf("| %s | %s | %s | %.4g | %s | %s | %d | %.1f |\n", cell(r.experiment).c_str(), cell(r.claim).c_str(),
              cell(r.metric).c_str(), r.value, r.bound.empty() ? "-" : cell(r.bound).c_str(), verdict(r).c_str(), r.seeds,
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

/// Defaults of the shared flags for one example.
struct ArgDefaults {
  int seeds = 3;        ///< --seeds; 0: the example has no seeds and no --seeds flag
  int quick_seeds = 1;  ///< seeds with --quick
  int first_seed = -1;  ///< >= 0: the example takes --first-seed, with this default
};

/// Where series_file writes: --out, else $WEFT_FIGURE_DATA, else ./figure-data.
inline std::string& figure_dir_override() {
  static std::string dir;
  return dir;
}

/// The one command line of every example (CLI11, examples only; the library does not use it):
///   --seeds N         seeds 0..N-1 (the example's default count; only examples with seeds)
///   --first-seed S    seeds S..S+N-1 (only examples that take it, e.g. for a calibration run)
///   --quick           a smaller run (fewer seeds or replications), what the smoke tests run
///   --threads N       weft::set_num_threads(N) (default: OpenMP's)
///   --out DIR         folder for the figure series (default $WEFT_FIGURE_DATA or figure-data)
///   -h, --help        usage, then exit 0
/// An example adds its own flags with flag() before parse(). Unknown flags and values that do
/// not parse (`--seeds x`) are errors: CLI11 prints what was wrong and the program exits non-zero.
class Args {
 public:
  bool quick = false;
  int seeds = 3;
  int first_seed = 0;
  int threads = 0;  ///< 0: not given
  std::string out;

  explicit Args(const std::string& description, ArgDefaults d = {})
      : seeds(d.seeds), first_seed(std::max(d.first_seed, 0)), seeds_flag_(d.seeds > 0), quick_seeds_(d.quick_seeds),
        app_(description) {
    if (seeds_flag_)
      app_.add_option("--seeds", seeds, "number of seeds (>= 1)")->capture_default_str();
    if (d.first_seed >= 0)
      app_.add_option("--first-seed", first_seed, "first seed (>= 0)")->capture_default_str();
    app_.add_flag("--quick", quick,
                  d.seeds > 0 ? "fewer seeds (" + std::to_string(d.quick_seeds) + ")" : "a smaller run");
    app_.add_option("--threads", threads, "threads for weft's parallel loops (>= 1)");
    app_.add_option("--out", out, "folder for the figure series (default $WEFT_FIGURE_DATA or figure-data)");
  }
  /// Parses at once (examples without flags of their own).
  Args(int argc, char** argv, ArgDefaults d = {}, const std::string& description = "a weft example")
      : Args(description, d) {
    parse(argc, argv);
  }
  Args(const Args&) = delete;
  Args& operator=(const Args&) = delete;

  /// An example's own on/off flag, e.g. flag("--large", large, "the spec's larger model").
  Args& flag(const std::string& name, bool& value, const std::string& help) {
    app_.add_flag(name, value, help);
    return *this;
  }
  /// Parses the command line; on --help or an error prints and exits.
  void parse(int argc, char** argv) {
    try {
      app_.parse(argc, argv);
      if (seeds_flag_ && app_.count("--seeds") && seeds < 1) throw CLI::ValidationError("--seeds", "expected >= 1, got " + std::to_string(seeds));
      if (first_seed < 0) throw CLI::ValidationError("--first-seed", "expected >= 0, got " + std::to_string(first_seed));
      if (app_.count("--threads") && threads < 1)
        throw CLI::ValidationError("--threads", "expected >= 1, got " + std::to_string(threads));
    } catch (const CLI::ParseError& e) {
      std::exit(app_.exit(e));
    }
    if (quick && seeds > 0) seeds = quick_seeds_;
    if (threads > 0) weft::set_num_threads(threads);
    if (!out.empty()) figure_dir_override() = out;
  }

 private:
  bool seeds_flag_;
  int quick_seeds_;
  CLI::App app_;
};

class Stopwatch {
 public:
  double seconds() const { return std::chrono::duration<double>(clock::now() - t0_).count(); }

 private:
  using clock = std::chrono::steady_clock;
  clock::time_point t0_ = clock::now();
};

/// A CSV file for a figure series under --out, else $WEFT_FIGURE_DATA, else ./figure-data.
inline std::ofstream series_file(const std::string& name, const std::string& header) {
  const char* env = std::getenv("WEFT_FIGURE_DATA");
  std::filesystem::path dir = !figure_dir_override().empty() ? figure_dir_override() : env ? env : "figure-data";
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
