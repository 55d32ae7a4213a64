// weft/peft/bone.hpp - Bone and its relatives (Jiale Kang, arXiv 2409.15371: "Bone: Block
// Affine Transformation as PEFT Methods for LLMs", later "Block-Affine Adaptation", "DiSHA",
// "MiSS: ... Simple Shard Sharing").
//
// The name "Bone" has meant two methods; weft gives each its own name:
//   BoneShared  = PEFT's Bone from PR #2233 on, renamed MiSS (init_weights=True): the cheap
//                 shared-shard update. M (r, out), zero at init. With x zero-padded to a multiple
//                 of r and cut into chunks x_(k) of length r, S = sum_k x_(k) (rows, r) and
//                   y = x W^T + b + S M,
//                 i.e. delta W[o, j] = M[j mod r, o] (M^T tiled across the input, the last tile
//                 truncated). No scaling factor, no divisibility needed. Forward: a chunk sum
//                 (O(N in)) and a small GEMM (O(N r out)); cheaper than LoRA.
//   MissMini    = PEFT MiSS init_weights="mini": M = M0 (r, mini_r) tiled along the output
//                 (M[j, o] = M0[j, o mod mini_r]); needs out % mini_r == 0. r mini_r parameters.
//   BoneAffine  = the paper's v1-v3 "Bone" = PEFT's first Bone (PR #2172) = PEFT's "Bat"
//                 (init_weights="bat"), which produced the paper's headline numbers: for every
//                 r x r block of W, W'_{a,c} = W_{a,c} (I + B_a) + B_a with B_a (r, r) shared
//                 along output-row block a; B (out / r, r, r) zero at init; in and out must be
//                 multiples of r. A weight transform: the layer multiplies by the materialised W'
//                 (cost out in r multiply-adds per step plus the layer's GEMM; the product's
//                 gradient dL/dW' is the "weight guide" of dB_a = sum_c (W_{a,c} + I)^T dL/dW'_{a,c}).
//                 Merge: W <- W'; unmerge: W_{a,c} = (W'_{a,c} - B_a)(I + B_a)^{-1} (inverse in
//                 double; a singular I + B_a is a ValueError). Several BoneAffine transforms on
//                 a layer compose in order (nonlinearly).
// All three have r out parameters (MissMini r mini_r), against LoRA's r (in + out): on a square
// layer Bone with r_b = 2 r_L matches LoRA's budget (peft/budget.hpp). Bone's r is not LoRA's r.
// Defaults (PEFT MiSS): r = 64, dropout 0, zero init, mini_r = 1.
#pragma once

#include "weft/core/tensor.hpp"  // before <Eigen/LU>: see weft/core/detail/eigen.hpp

#include <Eigen/LU>

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/nn/attach.hpp"
#include "weft/peft/adapter.hpp"
#include "weft/peft/ops.hpp"

WEFT_NAMESPACE_BEGIN
namespace peft {

struct BoneOptions {
  index_t r = 64;
  double dropout = 0;     ///< BoneShared / MissMini: drop probability on x before the chunk sum
  bool zero_init = true;  ///< false: kaiming-uniform parameters (debug: not a no-op at step 0)
  index_t mini_r = 1;     ///< MissMini: width of M0
};

namespace detail {
inline void check_bone_shared(index_t in, index_t out, const BoneOptions& o, bool mini, const char* fn) {
  WEFT_CHECK(o.r >= 1 && o.r <= in, value, fn, "expected a shard size 1 <= r <= in = ", in, " for a layer of shape (",
             out, ", ", in, "), got r = ", o.r);
  WEFT_CHECK(o.dropout >= 0 && o.dropout < 1, value, fn, "expected a dropout probability 0 <= p < 1, got ", o.dropout);
  if (mini)
    WEFT_CHECK(o.mini_r >= 1 && o.mini_r <= out && out % o.mini_r == 0, shape, fn,
               "expected mini_r >= 1 dividing the output width ", out, ", got mini_r = ", o.mini_r);
}
inline void check_bone_affine(index_t in, index_t out, const BoneOptions& o, const char* fn) {
  WEFT_CHECK(o.r >= 1, value, fn, "expected a block size r >= 1, got ", o.r);
  WEFT_CHECK(in % o.r == 0 && out % o.r == 0, shape, fn, "expected a weight of shape (", out, ", ", in,
             ") fully divisible into [", o.r, ", ", o.r, "] blocks, got remainders ", out % o.r, " and ", in % o.r);
}

/// S M of a chunk-sum S (..., r) and M (r, n), for any input rank.
template <class T>
Var<T> rows_times(const Var<T>& s, const Var<T>& m) {
  if (s.rank() == 2 || s.rank() == 3) return matmul(s, m);
  const Shape out = s.shape().with(-1, m.dim(1));
  return reshape(matmul(reshape(s, Shape{detail::rows_of(s.shape()), s.shape().last()}), m), out);
}

/// Shared-shard side path: S = chunk_sum(drop(x), r), then `tail(S)`.
template <class T, class Tail>
Var<T> shared_shard_forward(const Adapter<T>& a, const Var<T>& x, double p, Rng& rng, const char* fn, Tail&& tail) {
  WEFT_CHECK(x.rank() >= 1 && x.shape().last() == a.in_features(), shape, fn, "expected input of shape (..., ",
             a.in_features(), "), got ", x.shape());
  Tape<T>& t = x.tape();
  if (a.merged()) return t.constant(t.alloc(x.shape().with(-1, a.out_features())));
  const bool drop = p > 0 && a.training() && is_grad_enabled();
  return tail(chunk_sum(drop ? dropout(x, p, rng) : x, a.rank()));
}
}  // namespace detail

/// The shared-shard Bone (PEFT Bone / MiSS): y += S M (see the file comment).
template <class T>
class BoneShared : public nn::SidePath<T>, public Adapter<T> {
 public:
  BoneShared(const Parameter<T>& base, const BoneOptions& o, Rng& rng)
      : Adapter<T>(base, o.r, "peft::BoneShared"), o_(o) {
    detail::check_bone_shared(this->in_features(), this->out_features(), o, false, "peft::BoneShared");
    Tensor<T> m(Shape{o.r, this->out_features()});
    if (!o.zero_init) init::kaiming_uniform(m, rng, std::sqrt(5.0));
    M_ = Parameter<T>(m, "M");
    rng_ = Rng(rng.next_u64());
  }
  std::string name() const override { return "bone_shared"; }
  std::string method() const override { return "bone_shared"; }
  bool is_side_path() const override { return true; }
  bool is_adapter() const override { return true; }
  bool in_weight() const override { return this->merged(); }
  void set_training(bool on) noexcept override { Adapter<T>::set_training(on); }
  bool is_linear() const override { return true; }  ///< f(x) = x dW^T: nn::fold merges it
  /// The tiled dW, or zeros while merged.
  Tensor<T> linear_delta() const override {
    return this->merged() ? Tensor<T>(this->base_weight().shape()) : Adapter<T>::delta_weight();
  }
  Var<T> forward(const Var<T>& x) override {
    return detail::shared_shard_forward(*this, x, o_.dropout, rng_, "peft::BoneShared::forward",
                                        [&](const Var<T>& s) { return detail::rows_times(s, x.tape().param(M_)); });
  }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override { out.emplace_back("M", M_); }
  std::vector<std::pair<std::string, Parameter<T>>> adapter_parameters() const override { return {{"M", M_}}; }
  Parameter<T>& M() noexcept { return M_; }  ///< (r, out)
  const Parameter<T>& M() const noexcept { return M_; }
  const BoneOptions& options() const noexcept { return o_; }

 protected:
  void do_merge(Tensor<T>& w) const override { add_tiled(w, T(1)); }
  void do_unmerge(Tensor<T>& w) const override { add_tiled(w, T(-1)); }

 private:
  void add_tiled(Tensor<T>& w, T c) const {  // W[:, j] += c M[j mod r, :]^T
    const Tensor<T> mt = M_.value().transpose();
    tile_add(mt.data(), w.data(), this->out_features(), this->in_features(), this->rank(), c);
  }
  BoneOptions o_;
  Parameter<T> M_;
  Rng rng_;
};

/// MiSS "mini": BoneShared with M = M0 (r, mini_r) tiled along the output.
template <class T>
class MissMini : public nn::SidePath<T>, public Adapter<T> {
 public:
  MissMini(const Parameter<T>& base, const BoneOptions& o, Rng& rng) : Adapter<T>(base, o.r, "peft::MissMini"), o_(o) {
    detail::check_bone_shared(this->in_features(), this->out_features(), o, true, "peft::MissMini");
    Tensor<T> m(Shape{o.r, o.mini_r});
    if (!o.zero_init) init::kaiming_uniform(m, rng, std::sqrt(5.0));
    M0_ = Parameter<T>(m, "M0");
    rng_ = Rng(rng.next_u64());
  }
  std::string name() const override { return "miss_mini"; }
  std::string method() const override { return "miss_mini"; }
  bool is_side_path() const override { return true; }
  bool is_adapter() const override { return true; }
  bool in_weight() const override { return this->merged(); }
  void set_training(bool on) noexcept override { Adapter<T>::set_training(on); }
  bool is_linear() const override { return true; }  ///< f(x) = x dW^T: nn::fold merges it
  /// The tiled dW, or zeros while merged.
  Tensor<T> linear_delta() const override {
    return this->merged() ? Tensor<T>(this->base_weight().shape()) : Adapter<T>::delta_weight();
  }
  Var<T> forward(const Var<T>& x) override {
    return detail::shared_shard_forward(*this, x, o_.dropout, rng_, "peft::MissMini::forward", [&](const Var<T>& s) {
      return tile(detail::rows_times(s, x.tape().param(M0_)), this->out_features());
    });
  }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override { out.emplace_back("M0", M0_); }
  std::vector<std::pair<std::string, Parameter<T>>> adapter_parameters() const override { return {{"M0", M0_}}; }
  Parameter<T>& M0() noexcept { return M0_; }  ///< (r, mini_r)
  const Parameter<T>& M0() const noexcept { return M0_; }
  index_t mini_r() const noexcept { return o_.mini_r; }
  const BoneOptions& options() const noexcept { return o_; }

 protected:
  void do_merge(Tensor<T>& w) const override { add_tiled(w, T(1)); }
  void do_unmerge(Tensor<T>& w) const override { add_tiled(w, T(-1)); }

 private:
  void add_tiled(Tensor<T>& w, T c) const {  // M^T[o, j] = M0[j, o mod mini_r]
    const index_t out = this->out_features(), r = this->rank(), mr = o_.mini_r;
    Tensor<T> mt(Shape{out, r});
    for (index_t o = 0; o < out; ++o)
      for (index_t j = 0; j < r; ++j) mt(o, j) = M0_.value()(j, o % mr);
    tile_add(mt.data(), w.data(), out, this->in_features(), r, c);
  }
  BoneOptions o_;
  Parameter<T> M0_;
  Rng rng_;
};

/// The block-affine Bone (Bat; the paper's v1-v3 Bone): W -> W (I + B) + B per r x r block.
template <class T>
class BoneAffine : public nn::WeightTransform<T>, public Adapter<T> {
 public:
  /// rng is used only when o.zero_init is false. o.dropout must be 0 (the spec has none).
  BoneAffine(const Parameter<T>& base, const BoneOptions& o, Rng& rng) : Adapter<T>(base, o.r, "peft::BoneAffine") {
    detail::check_bone_affine(this->in_features(), this->out_features(), o, "peft::BoneAffine");
    WEFT_CHECK(o.dropout == 0, config, "peft::BoneAffine", "expected dropout 0 (the block-affine map has none), got ",
               o.dropout);
    Tensor<T> b(Shape{this->out_features() / o.r, o.r, o.r});
    if (!o.zero_init) init::kaiming_uniform(b, rng, std::sqrt(5.0));
    B_ = Parameter<T>(b, "B");
  }
  std::string name() const override { return "bone_affine"; }
  /// merge() writes W (I + B) + B into the stored weight: only other BoneAffines may come before
  /// it in the chain, no compander or general map (nn::Linear::add_transform refuses those).
  bool needs_plain_weight() const override { return true; }
  std::string method() const override { return "bone_affine"; }
  bool is_side_path() const override { return false; }
  bool is_adapter() const override { return true; }
  bool in_weight() const override { return this->merged(); }
  void set_training(bool on) noexcept override { Adapter<T>::set_training(on); }
  /// W' = W (I + B) + B (w itself while merged).
  Var<T> apply(const Var<T>& w) override {
    WEFT_CHECK(w.shape() == Shape({this->out_features(), this->in_features()}), shape, "peft::BoneAffine::apply",
               "expected a weight of shape (", this->out_features(), ", ", this->in_features(), "), got ", w.shape());
    if (this->merged()) return w;
    return block_affine(w, w.tape().param(B_));
  }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override { out.emplace_back("B", B_); }
  std::vector<std::pair<std::string, Parameter<T>>> adapter_parameters() const override { return {{"B", B_}}; }
  Parameter<T>& B() noexcept { return B_; }  ///< (out / r, r, r)
  const Parameter<T>& B() const noexcept { return B_; }

 protected:
  void do_merge(Tensor<T>& w) const override {
    Tensor<T> out(w.shape());
    detail::block_affine_forward(w.data(), B_.value().data(), out.data(), this->out_features(), this->in_features(),
                                 this->rank());
    w.copy_from(out);
  }
  void do_unmerge(Tensor<T>& w) const override {
    const index_t r = this->rank(), in = this->in_features(), nb = this->out_features() / r, per = in / r;
    std::vector<Eigen::MatrixXd> inv(static_cast<std::size_t>(nb));
    for (index_t a = 0; a < nb; ++a) {  // every inverse first: a singular block leaves w unchanged
      const Eigen::MatrixXd m =
          Eigen::MatrixXd::Identity(r, r) + ConstMatrixMap<T>(B_.value().data() + a * r * r, r, r).template cast<double>();
      Eigen::FullPivLU<Eigen::MatrixXd> lu(m);
      WEFT_CHECK(lu.isInvertible(), value, "peft::BoneAffine::unmerge",
                 "expected I + B_a invertible for every block, got a singular one at a = ", a, "; W is unchanged");
      inv[std::size_t(a)] = lu.inverse();
    }
    for (index_t a = 0; a < nb; ++a) {  // chunk rows q = i per + c of block a: (W'_q - B_a[i]) (I + B_a)^-1
      MatrixMap<T> wa(w.data() + a * r * in, in, r);
      Eigen::MatrixXd d = wa.template cast<double>();
      for (index_t q = 0; q < in; ++q)
        d.row(q) -= ConstMatrixMap<T>(B_.value().data() + (a * r + q / per) * r, 1, r).template cast<double>();
      wa = (d * inv[std::size_t(a)]).template cast<T>();
    }
  }

 private:
  Parameter<T> B_;
};

}  // namespace peft
WEFT_NAMESPACE_END
