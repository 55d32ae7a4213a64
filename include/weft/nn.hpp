// weft/nn.hpp - the nn layer: modules (Linear, MLP, LayerNorm, MultiHeadAttention,
// TransformerBlock, TinyViT), the attach interfaces for techniques, optimisers, schedules and
// the training loop.
#pragma once

#include "weft/nn/attach.hpp"
#include "weft/nn/attachment.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/fold.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/module.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/schedule.hpp"
#include "weft/nn/trainer.hpp"
#include "weft/nn/vit.hpp"
