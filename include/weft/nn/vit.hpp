// weft/nn/vit.hpp - a tiny Vision Transformer for small square single-channel images
// (8x8 digits by default).
//
// Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), at toy scale:
//   patches:  the S x S image is cut into (S/p)^2 patches of p x p pixels (row-major order)
//   embed:    each patch (p^2 pixels) -> D through patch_embed (a Linear layer)
//   tokens:   [cls; patches] + pos, with a learned class token and learned positions
//             (both initialised N(0, 0.02^2))
//   encoder:  depth pre-LN TransformerBlocks, then a final LayerNorm
//   head:     Linear(D, classes) on the class token
// Input: (B, S*S) row-major pixels; output: logits (B, classes).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/shape.hpp"
#include "weft/nn/attention.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

struct ViTConfig {
  index_t image_size = 8;
  index_t patch = 2;
  index_t dim = 32;
  index_t depth = 2;
  index_t heads = 4;
  index_t mlp_ratio = 2;
  index_t classes = 10;
};

/// (B, S*S) images -> (B, (S/p)^2, p*p) patches, differentiable (a reshape/transpose chain).
template <class T>
Var<T> patchify(const Var<T>& images, index_t image_size, index_t patch) {
  WEFT_CHECK(patch > 0 && image_size > 0 && image_size % patch == 0, shape, "nn::patchify",
             "expected a patch size dividing the image size, got image ", image_size, ", patch ", patch);
  WEFT_CHECK(images.rank() == 2 && images.dim(1) == image_size * image_size, shape, "nn::patchify",
             "expected images of shape (B, ", image_size * image_size, "), got ", images.shape());
  const index_t B = images.dim(0), g = image_size / patch;
  // pixel (a p + i, b p + j) of image n sits at [(n, a), i, b, j]; swap i and b
  Var<T> x = reshape(images, Shape{B * g, patch, g, patch});
  return reshape(transpose(x, 1, 2), Shape{B, g * g, patch * patch});
}

template <class T>
class TinyViT : public Module<T> {
 public:
  Linear<T> patch_embed;
  Parameter<T> cls_token;  ///< (1, 1, D)
  Parameter<T> pos_embed;  ///< (tokens, D)
  std::vector<TransformerBlock<T>> blocks;
  LayerNorm<T> norm;
  Linear<T> head;

  TinyViT() = default;
  TinyViT(const ViTConfig& c, Rng& rng) : cfg_(c) {
    WEFT_CHECK(c.image_size > 0 && c.patch > 0 && c.image_size % c.patch == 0, shape, "nn::TinyViT",
               "expected a patch size dividing the image size, got image ", c.image_size, ", patch ", c.patch);
    WEFT_CHECK(c.dim > 0 && c.heads > 0 && c.dim % c.heads == 0, shape, "nn::TinyViT",
               "expected dim divisible by heads, got dim ", c.dim, ", heads ", c.heads);
    WEFT_CHECK(c.depth >= 0 && c.mlp_ratio > 0 && c.classes > 0, value, "nn::TinyViT",
               "expected depth >= 0, mlp_ratio > 0 and classes > 0, got ", c.depth, ", ", c.mlp_ratio, ", ", c.classes);
    const index_t g = c.image_size / c.patch;
    patch_embed = Linear<T>(c.patch * c.patch, c.dim, rng);
    Tensor<T> cls(Shape{1, 1, c.dim}), pos(Shape{g * g + 1, c.dim});
    init::normal(cls, 0.0, 0.02, rng);
    init::normal(pos, 0.0, 0.02, rng);
    cls_token = Parameter<T>(cls, "cls_token");
    pos_embed = Parameter<T>(pos, "pos_embed");
    blocks.reserve(std::size_t(c.depth));
    for (index_t i = 0; i < c.depth; ++i) blocks.emplace_back(c.dim, c.heads, c.mlp_ratio, rng);
    norm = LayerNorm<T>(c.dim);
    head = Linear<T>(c.dim, c.classes, rng);
  }
  const ViTConfig& config() const noexcept { return cfg_; }

  /// Token features after the final LayerNorm: (B, tokens, D).
  Var<T> features(const Var<T>& images) {
    return features(images, [this](std::size_t i, const Var<T>& x) { return blocks[i](x); });
  }
  /// The same with block i computed by block(i, x) instead of blocks[i](x): a wrapper that
  /// replaces a block's forward (quant::QkrTransformerBlock) without changing the model.
  template <class BlockFn>
  Var<T> features(const Var<T>& images, BlockFn&& block) {
    WEFT_CHECK(cls_token.defined(), config, "nn::TinyViT::forward", "expected a constructed model, got an empty TinyViT");
    WEFT_CHECK(images.rank() == 2 && images.dim(1) == cfg_.image_size * cfg_.image_size, shape, "nn::TinyViT::forward",
               "expected images of shape (B, ", cfg_.image_size * cfg_.image_size, "), got ", images.shape());
    Tape<T>& t = images.tape();
    const index_t B = images.dim(0);
    Var<T> x = patch_embed(patchify(images, cfg_.image_size, cfg_.patch));  // (B, P, D)
    // broadcast the class token over the batch: ones (B, 1, 1) * cls (1, 1, D)
    Tensor<T> ones = t.alloc_uninit(Shape{B, 1, 1});
    ones.fill(T(1));
    Var<T> cls = t.constant(ones) * t.param(cls_token);
    x = concat(std::vector<Var<T>>{cls, x}, 1) + t.param(pos_embed);
    for (std::size_t i = 0; i < blocks.size(); ++i) x = block(i, x);
    return norm(x);
  }
  /// Logits (B, classes) from images (B, S*S).
  Var<T> forward(const Var<T>& images) { return logits(features(images)); }
  /// The same with the blocks computed by block(i, x) (see features).
  template <class BlockFn>
  Var<T> forward(const Var<T>& images, BlockFn&& block) {
    return logits(features(images, std::forward<BlockFn>(block)));
  }
  Var<T> operator()(const Var<T>& images) { return forward(images); }

  void visit(Members<T>& m) override {
    m.child("patch_embed", patch_embed);
    m.param("cls_token", cls_token);
    m.param("pos_embed", pos_embed);
    for (std::size_t i = 0; i < blocks.size(); ++i) m.child("blocks." + std::to_string(i), blocks[i]);
    m.child("norm", norm);
    m.child("head", head);
  }

 private:
  Var<T> logits(const Var<T>& f) { return head(reshape(slice(f, 1, 0, 1), Shape{f.dim(0), cfg_.dim})); }

  ViTConfig cfg_;
};

}  // namespace nn
WEFT_NAMESPACE_END
