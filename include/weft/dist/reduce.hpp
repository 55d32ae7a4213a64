// weft/dist/reduce.hpp - reductions across ranks beyond the gradients: tensors, a model's
// parameters (and a check that the replicas agree), and the statistics families accumulate.
//
// What needs a reduction under DataParallel, and what does not:
//   - state computed from the weights (quant's oscillation tracker and CGA freezing, the
//     compander's scales, pruning masks and D-Pruner's dual importance, which reads the reduced
//     gradient) is the same on every rank by construction, since the weights are: nothing to do
//     (max_divergence checks it);
//   - statistics of the data each rank saw are partial sums: prune::Calibration / HessianStats
//     (SparseGPT's and D-Pruner's Hessian, Wanda's column norms) are summed with allreduce(),
//     which gives exactly the statistics of the union of the ranks' calibration shards;
//   - incremental's exemplar memory selects samples by herding over a class's data: build it
//     from the whole class on every rank (same data, same result), not from a shard.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "weft/core/tensor.hpp"
#include "weft/dist/comm.hpp"
#include "weft/nn/module.hpp"
#include "weft/prune/calibration.hpp"

namespace weft::dist {

/// t <- sum over ranks of t (same shape on every rank).
template <class T>
void allreduce_sum(const Communicator& comm, Tensor<T>& t) {
  comm.allreduce_sum(t.data(), std::size_t(t.numel()));
}
/// t <- mean over ranks of t.
template <class T>
void allreduce_mean(const Communicator& comm, Tensor<T>& t) {
  allreduce_sum(comm, t);
  const T inv = T(1) / T(comm.size());
  for (index_t i = 0; i < t.numel(); ++i) t.data()[i] *= inv;
}

/// Sums every layer's calibration statistics over ranks (each rank calibrated on its shard).
template <class T>
void allreduce(const Communicator& comm, prune::Calibration<T>& cal) {
  cal.visit_sums([&](double* p, std::size_t n) { comm.allreduce_sum(p, n); });
}
template <class T>
void allreduce(const Communicator& comm, prune::HessianStats<T>& st) {
  st.visit_sums([&](double* p, std::size_t n) { comm.allreduce_sum(p, n); });
}

/// Every parameter of `model` <- rank root's (what DataParallel does at construction).
template <class T>
void broadcast_parameters(const Communicator& comm, nn::Module<T>& model, int root = 0) {
  for (auto& np : model.named_parameters()) {
    Tensor<T>& v = np.second.value();
    comm.broadcast(v.data(), std::size_t(v.numel()), root);
  }
}

/// The largest |p - p_rank0| over every parameter of `model`, the same value on every rank: 0
/// when the replicas are bit-identical (as they stay under DataParallel).
template <class T>
double max_divergence(const Communicator& comm, nn::Module<T>& model) {
  double worst = 0;
  std::vector<T> root;
  for (auto& np : model.named_parameters()) {
    const Tensor<T>& v = np.second.value();
    root.assign(v.data(), v.data() + v.numel());
    comm.broadcast(root.data(), root.size(), 0);
    for (std::size_t i = 0; i < root.size(); ++i) worst = std::max(worst, std::abs(double(v.data()[i]) - double(root[i])));
  }
  comm.allreduce_max(&worst, 1);
  return worst;
}

}  // namespace weft::dist
