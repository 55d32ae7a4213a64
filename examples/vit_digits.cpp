// examples/vit_digits.cpp - core row: a tiny ViT on the 8x8 digits.
//
// Model: patch 2x2 (16 patches + class token), width 32, depth 2, 4 heads, MLP ratio 2, pre-LN,
// learned positions. Split: test iff row index % 5 == 0 (1437 / 360). AdamW (lr 2e-3, weight
// decay 0.05), 2 warm-up epochs then cosine, batch 32, 40 epochs. Target: >= 95% test
// accuracy (mean over seeds); a float32 PyTorch model of this size reaches 97-98% in about 40
// epochs. Writes the per-epoch test accuracy to figure-data/core_vit_digits.csv.
#include "common/digits.hpp"
#include "weft/nn/vit.hpp"

int main(int argc, char** argv) {
  using namespace weft_examples;
  TrainConfig cfg;
  cfg.epochs = 40;
  cfg.lr = 2e-3;
  cfg.weight_decay = 0.05;
  cfg.warmup_epochs = 2;
  cfg.progress = true;  // a live line on a terminal (epoch, loss, samples/s), one line per epoch in a log
  const weft::nn::ViTConfig vc;  // 8x8 images, patch 2, width 32, depth 2, 4 heads, MLP ratio 2, 10 classes
  return run_digits_experiment(
      Args(argc, argv, {}, "a tiny ViT on the 8x8 digits"), "core/vit_digits",
      "tiny ViT (patch 2, width 32, depth 2, 4 heads) reaches >= 95% test accuracy on digits", "core_vit_digits", 0.95,
      cfg, [&](weft::Rng& rng) { return weft::nn::TinyViT<float>(vc, rng); });
}
