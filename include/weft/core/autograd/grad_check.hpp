// weft/core/autograd/grad_check.hpp - compare autograd gradients with numerical derivatives.
//
// grad_check(f, inputs, options) evaluates f(tape, vars) -> Var on float64 copies of `inputs`,
// contracts the output with a fixed random tensor R (so every output element matters), and
// compares the autograd gradient of L = sum(R * f) with a numerical one for every input element:
//   grad_check               central differences (L(x + h e_j) - L(x - h e_j)) / 2h, h = 1e-6
//   grad_check_complex_step  Im L(x + i h e_j) / h with h = 1e-20: no cancellation, so agreement
//                            to ~1e-13 is expected. f must be generic over the scalar type (a
//                            generic lambda): it is also called with Tape<std::complex<double>>,
//                            and every op in it must be holomorphic away from kinks.
// An element passes when |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
//
//   auto f = [](auto& tape, const auto& x) { return weft::sum(weft::tanh(x[0]) * x[1]); };
//   auto r = weft::grad_check(f, {a, b});     // or grad_check_complex_step(f, {a, b})
//   CHECK(r.ok);   // r.message says where the largest error is
#pragma once

#include <algorithm>
#include <cmath>
#include <complex>
#include <sstream>
#include <string>
#include <vector>

#include "weft/core/autograd/tape.hpp"
#include "weft/core/rng.hpp"

WEFT_NAMESPACE_BEGIN

struct GradCheckOptions {
  double step = 0.0;     ///< finite-difference step; 0 picks 1e-6 (central) or 1e-20 (complex step)
  double atol = 1e-7;
  double rtol = 1e-5;
  std::uint64_t seed = 1234;  ///< seed of the random output contraction R
};

struct GradCheckResult {
  bool ok = true;
  double max_abs_error = 0;    ///< largest |analytic - numeric| over all elements
  double max_rel_error = 0;    ///< largest error / max(|analytic|, |numeric|, 1e-300)
  std::size_t worst_input = 0; ///< input and element of the largest excess over the tolerance
  index_t worst_element = 0;
  double analytic = 0, numeric = 0;  ///< the two values at that element
  index_t checked = 0;               ///< number of elements compared
  std::string message;
};

namespace detail {
template <class S>
std::vector<Var<S>> grad_check_vars(Tape<S>& tape, const std::vector<Tensor<S>>& xs, bool requires) {
  std::vector<Var<S>> v;
  v.reserve(xs.size());
  for (auto& x : xs) v.push_back(requires ? tape.variable(x) : tape.constant(x));
  return v;
}
/// L = sum(R * f(xs)) evaluated without recording gradients.
template <class S, class F>
S grad_check_eval(F& f, const std::vector<Tensor<S>>& xs, const Tensor<double>& R) {
  Tape<S> tape;
  no_grad ng;
  auto vars = grad_check_vars<S>(tape, xs, false);
  Var<S> out = f(tape, vars);
  WEFT_CHECK(out.shape() == R.shape(), shape, "grad_check", "expected f to return the same shape on every call, got ",
             out.shape(), " after ", R.shape());
  S acc(0);
  for (index_t i = 0; i < R.numel(); ++i) acc += S(R.flat(i)) * out.value().flat(i);
  return acc;
}

template <bool ComplexStep, class F>
GradCheckResult grad_check_impl(F& f, const std::vector<Tensor<double>>& inputs, const GradCheckOptions& o) {
  const char* fn = ComplexStep ? "grad_check_complex_step" : "grad_check";
  WEFT_CHECK(!inputs.empty(), shape, fn, "expected at least one input, got none");
  for (std::size_t i = 0; i < inputs.size(); ++i)
    WEFT_CHECK(inputs[i].defined() && inputs[i].all_finite(), value, fn, "expected defined, finite inputs, got ",
               inputs[i].defined() ? "non-finite values" : "an undefined tensor", " in input ", i);
  WEFT_CHECK(o.atol >= 0 && o.rtol >= 0 && o.step >= 0, value, fn,
             "expected atol, rtol, step >= 0, got ", o.atol, ", ", o.rtol, ", ", o.step);
  constexpr bool cs = ComplexStep;
  const double h = o.step > 0 ? o.step : (cs ? 1e-20 : 1e-6);

  // analytic gradients of sum(R * f)
  std::vector<Tensor<double>> xs;
  for (auto& x : inputs) xs.push_back(x.clone());
  Tensor<double> R;
  std::vector<Tensor<double>> analytic;
  {
    Tape<double> tape;
    enable_grad eg;
    auto vars = grad_check_vars<double>(tape, xs, true);
    Var<double> out = f(tape, vars);
    R = Tensor<double>(out.shape());
    Rng rng(o.seed);
    for (auto& r : R) r = rng.normal();
    if (out.requires_grad()) tape.backward(out, R);
    for (auto& v : vars) analytic.push_back(v.grad().defined() ? v.grad().clone() : Tensor<double>(v.shape()));
  }

  GradCheckResult res;
  double worst_excess = -1;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    for (index_t j = 0; j < xs[i].numel(); ++j) {
      double num;
      if constexpr (cs) {
        std::vector<Tensor<std::complex<double>>> zs;
        for (auto& x : xs) zs.push_back(x.template cast<std::complex<double>>());
        zs[i].flat(j) += std::complex<double>(0.0, h);
        num = grad_check_eval(f, zs, R).imag() / h;
      } else {
        const double x0 = xs[i].flat(j);
        xs[i].flat(j) = x0 + h;
        const double lp = grad_check_eval(f, xs, R);
        xs[i].flat(j) = x0 - h;
        const double lm = grad_check_eval(f, xs, R);
        xs[i].flat(j) = x0;
        num = (lp - lm) / (2 * h);
      }
      const double an = analytic[i].flat(j);
      const double err = std::abs(an - num);
      const double scale = std::max(std::abs(an), std::abs(num));
      const double tol = o.atol + o.rtol * scale;
      res.max_abs_error = std::max(res.max_abs_error, err);
      res.max_rel_error = std::max(res.max_rel_error, err / std::max(scale, 1e-300));
      ++res.checked;
      if (!(err <= tol)) res.ok = false;  // also catches NaN
      const double excess = std::isnan(err) ? 1e300 : err - tol;
      if (excess > worst_excess) {
        worst_excess = excess;
        res.worst_input = i;
        res.worst_element = j;
        res.analytic = an;
        res.numeric = num;
      }
    }
  }
  std::ostringstream os;
  os << "grad_check (" << (cs ? "complex step" : "central differences") << ", " << res.checked
     << " elements): " << (res.ok ? "ok" : "MISMATCH") << "; max abs error " << res.max_abs_error
     << ", max rel error " << res.max_rel_error << "; worst at input " << res.worst_input << " element "
     << res.worst_element << ": analytic " << res.analytic << " vs numeric " << res.numeric;
  res.message = os.str();
  return res;
}
}  // namespace detail

/// Checks autograd against central differences in float64.
template <class F>
GradCheckResult grad_check(F&& f, const std::vector<Tensor<double>>& inputs, const GradCheckOptions& o = {}) {
  return detail::grad_check_impl<false>(f, inputs, o);
}
/// Checks autograd against the complex-step derivative; f must be generic over the scalar type.
template <class F>
GradCheckResult grad_check_complex_step(F&& f, const std::vector<Tensor<double>>& inputs,
                                        const GradCheckOptions& o = {}) {
  return detail::grad_check_impl<true>(f, inputs, o);
}

WEFT_NAMESPACE_END
