// weft/ep/metrics.hpp - diagnostics of equilibrium propagation (spec 5 and 10).
//
//   cosine_per_layer(a, b)   per layer, the per-sample cosine of a_l and b_l averaged over the
//                            batch (error alignment: a = delta, b = an estimate of e)
//   relative_error(a, r)     |a - r|_F / |r|_F over all samples and dynamical neurons
//   jacobian_symmetry(net)   s / (s + a) with s = |(J + J^T)/2|_F, a = |(J - J^T)/2|_F for the
//                            activation-bypassed J = H' - I (1 = symmetric). From the blocks:
//                            s^2 = n + sum_l |B_l + W_l^T|^2 / 2, a^2 = sum_l |B_l - W_l^T|^2 / 2
//   weight_angle_deg(net)    the angle between (W_l)_{l>=2} and (B_l^T)_{l>=2} as two vectors, in
//                            degrees (0 = symmetric): 2 atan2(|u - v|, |u + v|) of the unit
//                            vectors u, v, accurate near 0 and 180 degrees where arccos of the
//                            cosine loses half the digits (1e-6 degrees of noise at symmetry)
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "weft/ep/net.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

/// Mean over samples of cos(a_l[b], b_l[b]) for each layer l (a sample where either vector is
/// zero counts as cosine 0).
template <class Real>
std::vector<double> cosine_per_layer(const State<Real>& a, const State<Real>& b) {
  const char* fn = "ep::cosine_per_layer";
  WEFT_CHECK(a.layers.size() == b.layers.size() && !a.layers.empty(), shape, fn,
             "expected two fields with the same number of layers (>= 1), got ", a.layers.size(), " and ",
             b.layers.size());
  std::vector<double> out;
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    const Tensor<Real>& x = a.layers[l];
    const Tensor<Real>& y = b.layers[l];
    WEFT_CHECK(x.rank() == 2 && x.shape() == y.shape() && x.dim(0) >= 1, shape, fn,
               "expected equal (batch, size) shapes in layer ", l + 1, ", got ", x.shape(), " and ", y.shape());
    double sum = 0;
    for (index_t i = 0; i < x.dim(0); ++i) {
      const auto xr = x.matrix().row(i).template cast<double>();
      const auto yr = y.matrix().row(i).template cast<double>();
      const double nx = xr.norm(), ny = yr.norm();
      sum += nx > 0 && ny > 0 ? xr.dot(yr) / (nx * ny) : 0.0;
    }
    out.push_back(sum / double(x.dim(0)));
  }
  return out;
}

/// |a - r|_F / |r|_F over every layer and sample.
template <class Real>
double relative_error(const State<Real>& a, const State<Real>& r) {
  const char* fn = "ep::relative_error";
  WEFT_CHECK(a.layers.size() == r.layers.size(), shape, fn, "expected the same number of layers, got ",
             a.layers.size(), " and ", r.layers.size());
  double num = 0, den = 0;
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    WEFT_CHECK(a.layers[l].shape() == r.layers[l].shape(), shape, fn, "expected equal shapes in layer ", l + 1,
               ", got ", a.layers[l].shape(), " and ", r.layers[l].shape());
    num += (a.layers[l].array().template cast<double>() - r.layers[l].array().template cast<double>()).square().sum();
    den += r.layers[l].array().template cast<double>().square().sum();
  }
  return std::sqrt(num) / std::sqrt(den);
}

/// s / (s + a) of J = H' - I (see the file comment).
template <class Real>
double jacobian_symmetry(const DenseNet<Real>& net) {
  detail::check_net(net, "ep::jacobian_symmetry");
  double s2 = double(net.neurons()), a2 = 0;
  for (index_t l = 2; l <= net.layers(); ++l) {
    const auto Bm = net.B[std::size_t(l - 2)].value().matrix().template cast<double>();
    const auto Wt = net.W[std::size_t(l - 1)].value().matrix().transpose().template cast<double>();
    s2 += 0.5 * (Bm + Wt).squaredNorm();
    a2 += 0.5 * (Bm - Wt).squaredNorm();
  }
  const double s = std::sqrt(s2), a = std::sqrt(a2);
  return s / (s + a);
}

/// The angle between the feedforward and the (transposed) feedback weights, in degrees;
/// NaN for a network without feedback (K = 1) or with all-zero weights on either side.
template <class Real>
double weight_angle_deg(const DenseNet<Real>& net) {
  detail::check_net(net, "ep::weight_angle_deg");
  double ww = 0, bb = 0;
  for (index_t l = 2; l <= net.layers(); ++l) {
    ww += net.W[std::size_t(l - 1)].value().matrix().template cast<double>().squaredNorm();
    bb += net.B[std::size_t(l - 2)].value().matrix().template cast<double>().squaredNorm();
  }
  if (ww == 0 || bb == 0) return std::nan("");
  const double nw = std::sqrt(ww), nb = std::sqrt(bb);
  double diff = 0, sum = 0;  // |u - v|^2 and |u + v|^2 of the unit vectors u = W / nw, v = B^T / nb
  for (index_t l = 2; l <= net.layers(); ++l) {
    const auto u = net.W[std::size_t(l - 1)].value().matrix().template cast<double>().array() / nw;
    const auto v = net.B[std::size_t(l - 2)].value().matrix().transpose().template cast<double>().array() / nb;
    diff += (u - v).square().sum();
    sum += (u + v).square().sum();
  }
  return 2.0 * std::atan2(std::sqrt(diff), std::sqrt(sum)) * 180.0 / 3.14159265358979323846;
}

}  // namespace ep
WEFT_NAMESPACE_END
