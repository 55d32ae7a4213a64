// tests/core/ops_common.hpp - helpers for the tests of the differentiable ops (ops_*_test.cpp):
// run an op on a fresh tape, take its gradients, and check the tape semantics every op must
// have (accumulation, constants, no_grad).
//
// An op under test is a callable f(tape, vars) -> Var, the same form grad_check takes.
#pragma once

#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/core/autograd/tape.hpp"

namespace weft::test {

/// The leaves of xs on a tape, as variables (or constants).
template <class T>
std::vector<Var<T>> leaves(Tape<T>& tape, const std::vector<Tensor<T>>& xs, bool variables = true) {
  std::vector<Var<T>> v;
  for (const auto& x : xs) v.push_back(variables ? tape.variable(x) : tape.constant(x));
  return v;
}

/// The value of f on a fresh tape (a copy that outlives the tape). T defaults to double so that
/// `forward(f, {a, b})` works with a braced list.
template <class T = double, class F>
Tensor<T> forward(F&& f, const std::vector<Tensor<T>>& xs) {
  Tape<T> tape;
  auto v = leaves(tape, xs);
  return f(tape, v).value().clone();
}

/// A one-element root sum_k sum(seed * outs[k]), recorded as a custom op so that tests of an op
/// reduce its outputs without relying on other ops.
template <class T>
Var<T> contract(Tape<T>& tape, const std::vector<Var<T>>& outs, const Tensor<T>& seed) {
  Tensor<T> value = tape.alloc(Shape{});
  for (const auto& o : outs)
    for (index_t i = 0; i < seed.numel(); ++i) value.flat(0) += seed.flat(i) * o.value().flat(i);
  return tape.record_range(value, outs.begin(), outs.end(), [outs, seed](Tape<T>& tp, const Tensor<T>& g) {
    for (const auto& o : outs)
      if (Tensor<T>* d = tp.grad_sink(o)) d->array() += g.flat(0) * seed.array();
  });
}

/// Gradients of sum(seed * f(xs)) for every input (zeros where no gradient arrived).
template <class T = double, class F>
std::vector<Tensor<T>> gradients(F&& f, const std::vector<Tensor<T>>& xs, const Tensor<T>& seed) {
  Tape<T> tape;
  auto v = leaves(tape, xs);
  Var<T> out = f(tape, v);
  tape.backward(out, seed);
  std::vector<Tensor<T>> g;
  for (auto& x : v) g.push_back(x.grad().defined() ? x.grad().clone() : Tensor<T>(x.shape()));
  return g;
}

/// Checks the tape semantics of an op f over inputs xs (float64):
/// - an input used twice (f applied twice to the same leaves) gets both contributions;
/// - constant inputs get no gradient, and with every input constant the result needs none;
/// - inside a no_grad scope the op records no backward (result needs no gradient) but computes
///   the same value, and the mode is restored afterwards.
template <class F>
void check_tape_semantics(F&& f, const std::vector<Tensor<double>>& xs, std::uint64_t seed_id = 99) {
  const Tensor<double> y = forward(f, xs);
  Rng rng(seed_id);
  const Tensor<double> seed = randn<double>(y.shape(), rng);
  const std::vector<Tensor<double>> g1 = gradients(f, xs, seed);

  {  // used twice: both contributions arrive
    Tape<double> tape;
    auto v = leaves(tape, xs);
    Var<double> o1 = f(tape, v), o2 = f(tape, v);
    tape.backward(contract(tape, {o1, o2}, seed));
    for (std::size_t i = 0; i < xs.size(); ++i) {
      CAPTURE(i);
      REQUIRE(v[i].grad().defined());
      Tensor<double> twice = g1[i].clone();
      twice.array() *= 2.0;
      WEFT_CHECK_CLOSE(v[i].grad(), twice, 1e-12);
    }
  }
  {  // every input constant: nothing to differentiate
    Tape<double> tape;
    auto v = leaves(tape, xs, false);
    Var<double> o = f(tape, v);
    CHECK_FALSE(o.requires_grad());
    WEFT_CHECK_CLOSE(o.value(), y, 0.0);
    tape.backward(contract(tape, {o}, seed));
    for (auto& x : v) CHECK_FALSE(x.grad().defined());
  }
  if (xs.size() > 1) {  // first input constant, the others variables
    Tape<double> tape;
    auto v = leaves(tape, xs);
    v[0] = tape.constant(xs[0]);
    Var<double> o = f(tape, v);
    tape.backward(contract(tape, {o}, seed));
    CHECK_FALSE(v[0].grad().defined());
    for (std::size_t i = 1; i < xs.size(); ++i) {
      CAPTURE(i);
      if (v[i].grad().defined()) WEFT_CHECK_CLOSE(v[i].grad(), g1[i], 1e-12);
      else CHECK(g1[i].array().abs().maxCoeff() == 0.0);
    }
  }
  {  // no_grad: same value, no backward recorded, mode restored
    Tape<double> tape;
    auto v = leaves(tape, xs);
    {
      no_grad ng;
      Var<double> o = f(tape, v);
      CHECK_FALSE(o.requires_grad());
      WEFT_CHECK_CLOSE(o.value(), y, 0.0);
    }
    CHECK(is_grad_enabled());
    CHECK(f(tape, v).requires_grad());
  }
}

/// True when mixing Vars of two tapes is refused with ConfigError: by the op itself, or at the
/// latest by the backward pass of its result (a scalar seed is contracted over the output).
template <class Op>
bool refuses_other_tape(Op&& op) {
  try {
    auto y = op();
    if (!y.requires_grad()) return false;
    Tensor<double> seed(y.shape(), 1.0);
    y.tape().backward(y, seed);
  } catch (const ConfigError&) {
    return true;
  }
  return false;
}

}  // namespace weft::test
