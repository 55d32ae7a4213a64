// weft/nn/embedding.hpp - token embeddings and learned positional embeddings.
//
// Embedding<T>: a table `weight` of shape (vocab, dim); forward(tape, ids, batch, len) gathers
// row ids[i] for every token and returns (batch, len, dim). The backward pass scatter-adds the
// token gradients into the rows they came from (gather_rows), so a token used twice gets both
// contributions. Initialised N(0, 0.02^2) as GPT-2 (PyTorch's nn.Embedding uses N(0, 1)).
//
// PositionalEmbedding<T>: a table `weight` of shape (context, dim); forward(x) with x of shape
// (B, N, dim), N <= context, returns x + weight[0:N] broadcast over the batch. N(0, 0.02^2).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/core/rng.hpp"
#include "weft/nn/module.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

template <class T>
class Embedding : public Module<T> {
 public:
  Parameter<T> weight;  ///< (vocab, dim)

  Embedding() = default;
  Embedding(index_t vocab, index_t dim, Rng& rng, double init_std = 0.02) {
    WEFT_CHECK(vocab > 0 && dim > 0, shape, "nn::Embedding", "expected vocab > 0 and dim > 0, got vocab = ", vocab,
               ", dim = ", dim);
    WEFT_CHECK(init_std >= 0 && std::isfinite(init_std), value, "nn::Embedding", "expected a finite init_std >= 0, got ",
               init_std);
    Tensor<T> w(Shape{vocab, dim});
    init::normal(w, 0.0, init_std, rng);
    weight = Parameter<T>(w, "weight");
  }
  index_t vocab() const { return weight.shape()[0]; }
  index_t dim() const { return weight.shape()[1]; }

  /// ids (batch * len token ids in [0, vocab), row-major) -> (batch, len, dim).
  Var<T> forward(Tape<T>& t, const std::vector<index_t>& ids, index_t batch, index_t len) {
    WEFT_CHECK(weight.defined(), config, "nn::Embedding::forward", "expected a constructed layer, got an empty Embedding");
    WEFT_CHECK(batch > 0 && len > 0 && index_t(ids.size()) == batch * len, shape, "nn::Embedding::forward",
               "expected batch * len = ", batch, " * ", len, " ids with batch, len > 0, got ", ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i)
      WEFT_CHECK(ids[i] >= 0 && ids[i] < vocab(), value, "nn::Embedding::forward", "expected token ids in [0, ",
                 vocab(), "), got ", ids[i], " at position ", i);
    return reshape(gather_rows(t.param(weight), ids), Shape{batch, len, dim()});
  }

  void visit(Members<T>& m) override { m.param("weight", weight); }
};

template <class T>
class PositionalEmbedding : public Module<T> {
 public:
  Parameter<T> weight;  ///< (context, dim)

  PositionalEmbedding() = default;
  PositionalEmbedding(index_t context, index_t dim, Rng& rng, double init_std = 0.02) {
    WEFT_CHECK(context > 0 && dim > 0, shape, "nn::PositionalEmbedding",
               "expected context > 0 and dim > 0, got context = ", context, ", dim = ", dim);
    WEFT_CHECK(init_std >= 0 && std::isfinite(init_std), value, "nn::PositionalEmbedding",
               "expected a finite init_std >= 0, got ", init_std);
    Tensor<T> w(Shape{context, dim});
    init::normal(w, 0.0, init_std, rng);
    weight = Parameter<T>(w, "weight");
  }
  index_t context() const { return weight.shape()[0]; }
  index_t dim() const { return weight.shape()[1]; }

  /// x (B, N, dim) with N <= context -> x + weight[0:N].
  Var<T> forward(const Var<T>& x) {
    WEFT_CHECK(weight.defined(), config, "nn::PositionalEmbedding::forward",
               "expected a constructed layer, got an empty PositionalEmbedding");
    WEFT_CHECK(x.rank() == 3 && x.dim(1) >= 1 && x.dim(1) <= context() && x.dim(2) == dim(), shape,
               "nn::PositionalEmbedding::forward", "expected x of shape (B, N <= ", context(), ", ", dim(), "), got ",
               x.shape());
    Tape<T>& t = x.tape();
    Var<T> pos = t.param(weight);
    if (x.dim(1) < context()) pos = slice(pos, 0, 0, x.dim(1));
    return x + pos;
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  void visit(Members<T>& m) override { m.param("weight", weight); }
};

}  // namespace nn
WEFT_NAMESPACE_END
