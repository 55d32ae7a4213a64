// weft/incremental/distill.hpp - the Weight Aligning training loss: cross entropy on all seen
// classes plus knowledge distillation from the frozen previous model on the old classes.
//
//   L    = (1 - lambda) L_CE + lambda L_KD,     lambda = C_old / C_tot
//   L_KD = -(1/B) sum_i sum_{k < C_old} q_ik log p_ik,
//   q_i  = softmax(o_hat_i / T)          (teacher: the previous, aligned model; a constant)
//   p_i  = softmax(o_i[0:C_old] / T)     (the current model's old-class logits)
// with T = 2 and no T^2 factor (Zhao et al., CVPR 2020; official code and PyCIL `_KD_loss`).
// The first task (no teacher) uses L_CE only. Gradient of L_KD with respect to o_ik, k < C_old:
// (p_ik - q_ik) / (T B); the new-class logits get none from L_KD.
//
//   Var<float> logits = model(x), old = teacher(x);          // teacher under no_grad
//   Var<float> loss = incremental::wa_loss(logits, labels, old);
#pragma once

#include <cmath>
#include <optional>
#include <vector>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/core/checked.hpp"
#include "weft/core/ops/softmax.hpp"

WEFT_NAMESPACE_BEGIN
namespace incremental {

struct DistillOptions {
  double temperature = 2.0;     ///< T of the softened distributions (> 0)
  std::optional<double> lambda; ///< weight of L_KD in [0, 1]; default C_old / C_tot
};

/// lambda = C_old / C_tot (the official code's stage / (stage + 1) for equal task sizes).
inline double kd_lambda(index_t old_classes, index_t total_classes) {
  WEFT_CHECK(total_classes > 0 && old_classes >= 0 && old_classes <= total_classes, value, "incremental::kd_lambda",
             "expected 0 <= old_classes <= total_classes and total_classes > 0, got ", old_classes, " and ",
             total_classes);
  return double(old_classes) / double(total_classes);
}

/// softmax(teacher_logits / T) along rows, as a new tensor.
template <class T>
Tensor<T> soft_targets(const Tensor<T>& teacher_logits, double temperature) {
  WEFT_CHECK(teacher_logits.rank() == 2 && teacher_logits.dim(1) > 0, shape, "incremental::soft_targets",
             "expected teacher logits of shape (N, C) with C > 0, got ", teacher_logits.shape());
  WEFT_CHECK(positive_in<T>(temperature), value, "incremental::soft_targets",
             "expected a finite temperature > 0 whose reciprocal is finite in the logits' type, got ", temperature);
  Tensor<T> q(teacher_logits.shape());
  q.array() = teacher_logits.array() * T(1.0 / temperature);
  ops::softmax_rows(q.data(), q.data(), q.dim(0), q.dim(1));
  return q;
}

namespace detail {
template <class T>
void check_distill(const char* func, const Var<T>& logits, const Var<T>& teacher, double temperature) {
  WEFT_CHECK(logits.rank() == 2 && logits.dim(0) > 0 && logits.dim(1) > 0, shape, func,
             "expected non-empty student logits of shape (B, C_tot), got ", logits.shape());
  WEFT_CHECK(teacher.rank() == 2 && teacher.dim(0) == logits.dim(0) && teacher.dim(1) > 0 &&
                 teacher.dim(1) <= logits.dim(1),
             shape, func, "expected teacher logits of shape (", logits.dim(0), ", C_old) with 1 <= C_old <= ",
             logits.dim(1), ", got ", teacher.shape());
  WEFT_CHECK(positive_in<T>(temperature), value, func,
             "expected a finite temperature > 0 whose reciprocal is finite in the logits' type, got ", temperature);
}
}  // namespace detail

/// L_KD: cross entropy of softmax(logits[:, :C_old] / T) against softmax(teacher_logits / T),
/// averaged over the batch, no T^2 factor. C_old = teacher_logits.dim(1). No gradient reaches
/// the teacher's logits (they are read as values).
template <class T>
Var<T> distillation_loss(const Var<T>& logits, const Var<T>& teacher_logits, double temperature = 2.0) {
  detail::check_distill("incremental::distillation_loss", logits, teacher_logits, temperature);
  Tape<T>& t = logits.tape();
  const index_t c_old = teacher_logits.dim(1);
  Tensor<T> q = t.alloc_uninit(teacher_logits.shape());
  q.array() = teacher_logits.value().array() * T(1.0 / temperature);
  ops::softmax_rows(q.data(), q.data(), q.dim(0), q.dim(1));
  CrossEntropyOptions co;
  co.temperature = temperature;
  Var<T> old = c_old == logits.dim(1) ? logits : slice(logits, 1, 0, c_old);
  return cross_entropy(old, t.constant(q), co);
}

/// L = (1 - lambda) L_CE + lambda L_KD with lambda = C_old / C_tot (or o.lambda). labels are
/// head rows in [0, C_tot). With an undefined teacher_logits (the first task) L = L_CE.
template <class T>
Var<T> wa_loss(const Var<T>& logits, const std::vector<int>& labels, const Var<T>& teacher_logits,
               const DistillOptions& o = {}) {
  if (!teacher_logits.defined()) return cross_entropy(logits, labels);
  detail::check_distill("incremental::wa_loss", logits, teacher_logits, o.temperature);
  WEFT_CHECK(!o.lambda || (*o.lambda >= 0 && *o.lambda <= 1), value, "incremental::wa_loss",
             "expected lambda in [0, 1], got ", o.lambda.value_or(0.0));
  const double lambda = o.lambda ? *o.lambda : kd_lambda(teacher_logits.dim(1), logits.dim(1));
  Var<T> ce = cross_entropy(logits, labels);
  Var<T> kd = distillation_loss(logits, teacher_logits, o.temperature);
  return ce * T(1.0 - lambda) + kd * T(lambda);
}

}  // namespace incremental
WEFT_NAMESPACE_END
