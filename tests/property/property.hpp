// tests/property/property.hpp - the seeded property runner shared by tests/property/*: random
// shapes, tensors and options from weft::Rng, and the one property every public entry point
// must keep:
//
//   either it throws a weft::Error subclass (and its inputs, the model's parameters and the
//   object it was called on are bit-for-bit as before), or it returns a result of the right
//   shape that is finite whenever the inputs were finite and in the documented range.
//
// Any other exception type fails the case; a crash or a sanitizer report fails the executable.
//
//   prop::run("nn/linear forward", 101, 300, [](prop::Gen& g) {
//     const index_t in = g.extent(5);
//     nn::Linear<double> lin(g.near(in, "in"), g.extent(5), g.rng);  // may throw: case over
//     Tensor<double> x = g.tensor<double>({g.extent(4), in}, "x");
//     prop::Watch w;  w.add(x).add(lin);
//     prop::check(g, w, [&] { ... call ...; prop::expect_result(g, y, Shape{...}); });
//   });
//
// Each case draws from its own generator Rng(seed).stream(case), so a failing case is
// reproduced alone: the failure message names the property, the seed, the case and everything
// that was drawn; WEFT_PROPERTY_CASE=<case> runs only that case of every property, and
// WEFT_PROPERTY_CASES=<n> changes the number of cases per property (default: as written).
// Flags on the generator say what the docs promise: a drawn option outside its documented
// range or a shape that does not fit (`g.must_fail()`) must be rejected with a weft::Error; NaN,
// Inf or extreme entries (`g.exotic()`) may give an error or a non-finite result, but never a
// crash, a foreign exception or a modified input.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <sstream>
#include <string>
#include <typeinfo>
#include <vector>

#include "weft/core/autograd/parameter.hpp"
#include "weft/core/error.hpp"
#include "weft/core/rng.hpp"
#include "weft/core/tensor.hpp"
#include "weft/nn/module.hpp"

namespace weft::test::prop {

/// One case's generator: a weft::Rng plus a readable log of every draw and two flags.
class Gen {
 public:
  Gen(std::uint64_t seed, int index) : rng(Rng(seed).stream(std::uint64_t(index))) {}

  Rng rng;

  /// Everything drawn so far, for the failure message.
  const std::string& log() const noexcept { return log_; }
  void note(const std::string& s) { log_ += s + "; "; }
  template <class V>
  void note(const char* name, const V& v) {
    std::ostringstream os;
    os.precision(17);
    os << name << " = " << v;
    note(os.str());
  }

  /// A drawn option or shape that the docs say must be rejected.
  bool must_fail() const noexcept { return must_fail_; }
  void set_must_fail(const char* why) {
    must_fail_ = true;
    note(std::string("[must fail: ") + why + "]");
  }
  /// Called by check() after each call: must_fail applies to the draws made for one call.
  void consume_must_fail() noexcept { must_fail_ = false; }
  /// An option outside its documented range was drawn: the constructor (or the function taking
  /// the options) must reject it.
  bool bad_option() const noexcept { return bad_option_; }
  void set_bad_option(const char* name) {
    bad_option_ = true;
    set_must_fail(name);
  }
  /// NaN/Inf/extreme data was drawn: the result may be non-finite.
  bool exotic() const noexcept { return exotic_; }
  void set_exotic() noexcept { exotic_ = true; }

  bool chance(double p) { return rng.uniform() < p; }
  int pick(int n) { return int(rng.below(std::uint64_t(n))); }

  /// An extent in [1, hi], or 0 with probability p_zero.
  index_t extent(index_t hi, double p_zero = 0.06) {
    if (chance(p_zero)) return 0;
    return 1 + index_t(rng.below(std::uint64_t(hi)));
  }
  /// n itself mostly; else n - 1, n + 1 or 0 (flagged must_fail when it differs from n).
  index_t near(index_t n, const char* name, double p_off = 0.12) {
    if (n < 0) return 0;  // an extent for an object that was given a negative one
    if (!chance(p_off)) return n;
    const index_t choices[3] = {n - 1, n + 1, 0};
    index_t m = choices[pick(3)];
    if (m < 0) m = n + 1;
    if (m != n) {
      note(name, m);
      set_must_fail("mismatched extent");
    }
    return m;
  }

  /// A value in [lo, hi) mostly; with probability p_bad one of the classic bad values (NaN,
  /// +-inf, 0, -1, 1e30, 1e-30, just outside the range). `valid(x)` says whether a drawn bad
  /// value is still valid per the docs (then must_fail is not set; a valid extreme magnitude, 1e30
/// or 1e-30, flags the case exotic).
  template <class Valid>
  double real(const char* name, double lo, double hi, double p_bad, Valid&& valid) {
    double x;
    if (chance(p_bad)) {
      const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
      const double bad[] = {nan, inf, -inf, 0.0, -1.0, 1e30, 1e-30, lo - 1e-3 * (1 + std::abs(lo)),
                            hi + 1e-3 * (1 + std::abs(hi)), -1e30};
      x = bad[pick(int(sizeof(bad) / sizeof(bad[0])))];
    } else {
      x = rng.uniform(lo, hi);
    }
    note(name, x);
    if (!valid(x)) set_bad_option(name);
    else if (std::isfinite(x) && x != 0 && (std::abs(x) >= 1e30 || std::abs(x) <= 1e-30))
      exotic_ = true;  // a valid but extreme option (a learning rate of 1e30) may overflow the result
    return x;
  }
  /// An integer in [lo, hi] mostly; with probability p_bad one of `bad` (must_fail unless valid).
  template <class Valid>
  long long integer(const char* name, long long lo, long long hi, double p_bad, std::vector<long long> bad,
                    Valid&& valid) {
    long long x = (chance(p_bad) && !bad.empty()) ? bad[std::size_t(pick(int(bad.size())))]
                                                  : lo + (long long)(rng.below(std::uint64_t(hi - lo + 1)));
    note(name, x);
    if (!valid(x)) set_bad_option(name);
    return x;
  }

  /// A tensor of shape s, N(0, scale^2) entries; with probability p_bad some entries are
  /// replaced by NaN, +-Inf, +-1e30 or 1e-30 (the whole tensor, for the extreme magnitudes) and
  /// the case is flagged exotic.
  template <class T>
  Tensor<T> tensor(const Shape& s, const char* name, double p_bad = 0.12, double scale = 1.0) {
    Tensor<T> t(s);
    for (auto& x : t) x = T(rng.normal() * scale);
    std::ostringstream os;
    os << name << " " << s;
    if (t.numel() > 0 && chance(p_bad)) {
      const int kind = pick(5);
      const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
      if (kind == 0 || kind == 1) {
        const index_t i = index_t(rng.below(std::uint64_t(t.numel())));
        t.flat(i) = T(kind == 0 ? nan : (chance(0.5) ? inf : -inf));
        os << (kind == 0 ? " NaN" : " Inf") << " at " << i;
      } else {
        const double f = kind == 2 ? 1e30 : (kind == 3 ? -1e30 : 1e-30);
        for (auto& x : t) x = T(double(x) * f);
        os << " scaled by " << f;
      }
      exotic_ = true;
    }
    note(os.str());
    return t;
  }

 private:
  std::string log_;
  bool must_fail_ = false;
  bool bad_option_ = false;
  bool exotic_ = false;
};

/// Snapshots of tensors and parameters, compared bit for bit later (after a throwing call).
class Watch {
 public:
  template <class T>
  Watch& add(const Tensor<T>& t, const char* name = "tensor") {
    if constexpr (std::is_same_v<T, float>) f_.push_back({t, t.clone(), name});
    else d_.push_back({t, t.clone(), name});
    return *this;
  }
  /// A parameter's value, read through the parameter at check time (so a replaced tensor counts).
  template <class T>
  Watch& add(const Parameter<T>& p, const char* name = "parameter") {
    if (!p.defined()) return *this;
    if constexpr (std::is_same_v<T, float>) pf_.push_back({p, p.value().clone(), name});
    else pd_.push_back({p, p.value().clone(), name});
    return *this;
  }
  /// Every parameter of a module.
  template <class T>
  Watch& add(nn::Module<T>& m) {
    for (auto& p : m.parameters()) add(p, "model parameter");
    return *this;
  }
  /// An empty string when nothing changed, else the name of the first changed item.
  std::string changed() const {
    for (const auto& e : f_) if (!same(e.handle, e.copy)) return e.name;
    for (const auto& e : d_) if (!same(e.handle, e.copy)) return e.name;
    for (const auto& e : pf_) if (!same(e.p.value(), e.copy)) return e.name;
    for (const auto& e : pd_) if (!same(e.p.value(), e.copy)) return e.name;
    return {};
  }

 private:
  template <class T>
  static bool same(const Tensor<T>& a, const Tensor<T>& b) {
    return a.shape() == b.shape() &&
           (a.numel() == 0 || std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.numel())) == 0);
  }
  template <class T>
  struct TE {
    Tensor<T> handle, copy;
    std::string name;
  };
  template <class T>
  struct PE {
    Parameter<T> p;
    Tensor<T> copy;
    std::string name;
  };
  std::vector<TE<float>> f_;
  std::vector<TE<double>> d_;
  std::vector<PE<float>> pf_;
  std::vector<PE<double>> pd_;
};

enum class Outcome { returned, weft_error, foreign };

/// Per-property tallies; run() checks that both outcomes occurred (the cases reach the valid
/// path and the checks).
struct Tally {
  int returned = 0, errors = 0;
};
inline Tally*& current_tally() {
  static Tally* t = nullptr;
  return t;
}

/// Runs `call` (which makes the call and checks its result with expect_result). A weft::Error
/// is the accepted failure: then nothing `w` watches may have changed. Anything else thrown
/// fails the case. When the draws since the previous check() include something the docs say
/// must be rejected (g.must_fail()), the call must throw.
template <class Call>
Outcome check(Gen& g, const Watch& w, Call&& call) {
  Outcome o = Outcome::returned;
  std::string what;
  try {
    call();
  } catch (const weft::Error& e) {
    o = Outcome::weft_error;
    what = e.what();
  } catch (const doctest::detail::TestFailureException&) {
    throw;
  } catch (const std::exception& e) {
    o = Outcome::foreign;
    FAIL_CHECK("a non-weft exception escaped: " << typeid(e).name() << ": " << e.what());
  } catch (...) {
    o = Outcome::foreign;
    FAIL_CHECK("an exception of a non-std type escaped");
  }
  if (o == Outcome::weft_error) {
    g.note(std::string("-> weft::Error: ") + what);
    const std::string c = w.changed();
    CHECK_MESSAGE(c.empty(), "after a weft::Error the input '" << c << "' changed");
    CHECK_MESSAGE(what.rfind("weft::", 0) == 0, "message does not name the function: " << what);
  } else if (o == Outcome::returned) {
    CHECK_MESSAGE(!g.must_fail(), "returned although the case must fail");
  }
  if (Tally* t = current_tally()) (o == Outcome::weft_error ? t->errors : t->returned) += (o != Outcome::foreign);
  g.consume_must_fail();  // draws for a next call in the same case set it anew
  return o;
}

/// Constructs something from drawn options: a weft::Error is accepted (the caller ends the
/// case), anything else thrown fails, and a constructor that accepts an option drawn outside
/// its documented range (g.bad_option()) fails. Returns true when construction succeeded.
template <class Make>
bool construct(Gen& g, Make&& make) {
  try {
    make();
  } catch (const weft::Error& e) {
    g.note(std::string("-> constructor: ") + e.what());
    if (Tally* t = current_tally()) ++t->errors;
    return false;
  } catch (const doctest::detail::TestFailureException&) {
    throw;
  } catch (const std::exception& e) {
    FAIL_CHECK("a non-weft exception escaped a constructor: " << typeid(e).name() << ": " << e.what());
    return false;
  }
  CHECK_MESSAGE(!g.bad_option(), "a constructor accepted an option outside its documented range");
  return !g.bad_option();
}

/// The result check: the expected shape, and finite entries unless the case drew exotic data.
template <class T>
void expect_result(const Gen& g, const Tensor<T>& r, const Shape& expected) {
  CHECK_MESSAGE(r.shape() == expected, "result shape " << r.shape() << ", expected " << expected);
  if (!g.exotic()) CHECK_MESSAGE(r.all_finite(), "non-finite result from finite, in-range inputs: " << r);
}
inline void expect_finite(const Gen& g, double v, const char* what) {
  if (!g.exotic()) CHECK_MESSAGE(std::isfinite(v), what << " is not finite: " << v);
}

inline int env_int(const char* name, int dflt) {
  const char* s = std::getenv(name);
  return (s && *s) ? std::atoi(s) : dflt;
}

/// Runs `body(gen)` for `cases` seeded cases (see the file comment for WEFT_PROPERTY_CASE and
/// WEFT_PROPERTY_CASES), then checks that the property saw both accepted calls and errors
/// (set `need_both` false for entry points that never throw on the drawn inputs).
template <class Body>
void run(const char* name, std::uint64_t seed, int cases, Body&& body, bool need_both = true) {
  const int only = env_int("WEFT_PROPERTY_CASE", -1);
  cases = env_int("WEFT_PROPERTY_CASES", cases);
  Tally tally;
  current_tally() = &tally;
  for (int i = 0; i < cases; ++i) {
    if (only >= 0 && i != only) continue;
    Gen g(seed, i);
    const std::string pname = name;
    INFO("property '" << pname << "', seed " << seed << ", case " << i << " (rerun alone: WEFT_PROPERTY_CASE=" << i
                      << "): " << g.log());
    body(g);
    if (env_int("WEFT_PROPERTY_VERBOSE", 0) >= 2) std::printf("%s case %d: %s\n", name, i, g.log().c_str());
  }
  current_tally() = nullptr;
  if (env_int("WEFT_PROPERTY_VERBOSE", 0))
    MESSAGE(std::string(name) << ": " << cases << " cases, " << tally.returned << " returned, " << tally.errors << " weft errors");
  if (only < 0 && need_both) {
    CHECK_MESSAGE(tally.returned > 0, std::string(name) << ": no case reached a valid call");
    CHECK_MESSAGE(tally.errors > 0, std::string(name) << ": no case raised an error");
  }
}

}  // namespace weft::test::prop
