// tests/ep/ep_test_util.hpp - shared setup of the ep tests: the spec's verification network
// (section 10: dense, dsilu, LeCun truncated-normal init, readout V (10 x s_K), c = 0), random
// inputs and labels, and the free fixed point relaxed to a tight tolerance.
#pragma once

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "support/test_util.hpp"
#include "weft/ep.hpp"

namespace ep_test {

using namespace weft;

using weft::test::ThreadCountGuard;

/// A batch: x ~ N(0, 1), labels uniform in [0, classes).
template <class Real>
struct Batch {
  Tensor<Real> X;
  std::vector<int> y;
};

template <class Real>
Batch<Real> random_batch(index_t batch, index_t inputs, index_t classes, Rng& rng) {
  Batch<Real> b{Tensor<Real>(Shape{batch, inputs}), std::vector<int>(std::size_t(batch))};
  for (auto& x : b.X) x = Real(rng.normal());
  for (auto& v : b.y) v = int(rng.below(std::uint64_t(classes)));
  return b;
}

/// The spec's V0-V3 setting: s = (16, 24, 24, 10), C = 10, B = 8, dsilu, mixing angle alpha.
template <class Real = double>
struct Setup {
  ep::DenseNet<Real> net;
  Batch<Real> batch;
  ep::State<Real> u0;
  ep::RelaxReport free;

  Setup(double alpha_deg, std::uint64_t seed, std::vector<index_t> sizes = {16, 24, 24, 10}, index_t B = 8,
        ep::Activation act = ep::Activation::dsilu, ep::Readout readout = ep::Readout::softmax) {
    Rng rng(seed);
    ep::NetOptions o;
    o.activation = act;
    o.alpha_deg = alpha_deg;
    o.readout = readout;
    o.num_classes = readout == ep::Readout::softmax ? 10 : sizes.back();
    net = ep::make_dense_net<Real>(sizes, rng, o);
    batch = random_batch<Real>(B, sizes[0], net.classes(), rng);
    ep::RelaxOptions r;
    r.gamma = 1;
    r.tol = std::is_same_v<Real, double> ? 1e-14 : 1e-6;
    r.max_iters = 2000;
    free = ep::free_phase(net, batch.X, u0, r);
  }
};

/// Tight nudged-phase options (gamma 1, tol 1e-14), as V1/V2.
inline ep::HepOptions tight_hep(int N, double abs_beta) {
  ep::HepOptions o;
  o.N = N;
  o.abs_beta = abs_beta;
  o.relax.gamma = 1;
  o.relax.tol = 1e-14;
  o.relax.max_iters = 2000;
  return o;
}

template <class S>
bool same_bits(const ep::State<S>& a, const ep::State<S>& b) {
  if (a.layers.size() != b.layers.size()) return false;
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    if (a.layers[l].shape() != b.layers[l].shape()) return false;
    if (std::memcmp(a.layers[l].data(), b.layers[l].data(), sizeof(S) * std::size_t(a.layers[l].numel())) != 0)
      return false;
  }
  return true;
}

/// max |a - b| over a state (real or complex).
template <class S>
double max_abs_diff(const ep::State<S>& a, const ep::State<S>& b) {
  double m = 0;
  for (std::size_t l = 0; l < a.layers.size(); ++l)
    for (index_t i = 0; i < a.layers[l].numel(); ++i)
      m = std::max(m, double(std::abs(a.layers[l].flat(i) - b.layers[l].flat(i))));
  return m;
}

}  // namespace ep_test
