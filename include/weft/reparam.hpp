// weft/reparam.hpp - weight reparameterisation: the weight compander w = a f(v / b) (Cakaj et
// al., IJCNN 2023) as an nn::WeightTransform, its model-level helpers, diagnostics and the
// compander-aware Adam. See docs/compander.md.
#pragma once

#include "weft/reparam/attach.hpp"
#include "weft/reparam/compander.hpp"
#include "weft/reparam/diagnostics.hpp"
#include "weft/reparam/kernels.hpp"
#include "weft/reparam/optim.hpp"
#include "weft/reparam/psi.hpp"
