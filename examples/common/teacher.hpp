// examples/common/teacher.hpp - the shifted-teacher task of the PEFT spec (section 10.2), shared
// by peft_bone_finetune and compose_qlora (double precision).
//
// Teacher T1: an MLP of the given sizes, tanh hidden, no biases, W ~ N(0, 1/in). Shifted teacher
// T2: per layer W += 0.5 (|W|_F / |D|_F) D with D = U V, U (out, 8), V (8, in) standard normal.
// Loss: the mean over the batch of |y_hat - y|^2.
#pragma once

#include <cmath>
#include <vector>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/rng.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"

namespace weft_examples::teacher {

using Mat = Eigen::MatrixXd;
using Teacher = std::vector<Mat>;  ///< weights (out, in)

/// A rows x cols matrix of N(0, sd^2) draws, row by row.
inline Mat randn(weft::index_t rows, weft::index_t cols, weft::Rng& rng, double sd = 1.0) {
  Mat m(rows, cols);
  for (weft::index_t i = 0; i < rows; ++i)
    for (weft::index_t j = 0; j < cols; ++j) m(i, j) = sd * rng.normal();
  return m;
}
/// T1 with layer sizes `sizes` (in, hidden..., out).
inline Teacher make(const std::vector<weft::index_t>& sizes, weft::Rng& rng) {
  Teacher t;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l)
    t.push_back(randn(sizes[l + 1], sizes[l], rng, 1.0 / std::sqrt(double(sizes[l]))));
  return t;
}
/// T2: every layer of t1 shifted by a random rank-8 matrix of half its norm.
inline Teacher shift(const Teacher& t1, weft::Rng& rng) {
  Teacher t2 = t1;
  for (auto& w : t2) {
    const Mat d = randn(w.rows(), 8, rng) * randn(8, w.cols(), rng);
    w += 0.5 * (w.norm() / d.norm()) * d;
  }
  return t2;
}
/// The teacher's outputs for the rows of x.
inline Mat forward(const Teacher& t, const Mat& x) {
  Mat h = x;
  for (std::size_t l = 0; l < t.size(); ++l) {
    h = h * t[l].transpose();
    if (l + 1 < t.size()) h = h.array().tanh().matrix();
  }
  return h;
}
/// Mean over rows of |pred - y|^2 for the student (no gradient).
inline double test_mse(weft::nn::MLP<double>& m, const weft::Tensor<double>& x, const weft::Tensor<double>& y) {
  weft::Tape<double> tape;
  weft::no_grad ng;
  const weft::Tensor<double> p = m(tape.constant(x)).value();
  return (p.array() - y.array()).square().sum() / double(x.dim(0));
}
/// One optimiser step on the batch (x, y); returns the batch loss.
inline double train_step(weft::nn::MLP<double>& m, weft::nn::Optimizer<double>& opt, weft::Tape<double>& tape,
                         const weft::Tensor<double>& x, const weft::Tensor<double>& y) {
  opt.zero_grad();
  weft::Var<double> loss =
      weft::mse(m(tape.constant(x)), tape.constant(y), weft::Reduction::sum) * (1.0 / double(x.dim(0)));
  const double v = loss.value().flat(0);
  tape.backward(loss);
  opt.step();
  tape.reset();
  return v;
}

}  // namespace weft_examples::teacher
