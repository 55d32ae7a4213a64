// weft/ep.hpp - generalised holomorphic equilibrium propagation (Laborieux & Zenke, NeurIPS 2022
// and ICLR 2024): dense vector-field networks, the batched split-plane relaxation, the Cauchy /
// one-sided / complex-step / online error estimators, RBP, weight gradients, Jacobian
// homeostasis, metrics and the training recipe. See docs/equilibrium_propagation.md.
#pragma once

#include "weft/ep/activation.hpp"
#include "weft/ep/engine.hpp"
#include "weft/ep/estimators.hpp"
#include "weft/ep/gradients.hpp"
#include "weft/ep/homeostasis.hpp"
#include "weft/ep/kernels.hpp"
#include "weft/ep/metrics.hpp"
#include "weft/ep/net.hpp"
#include "weft/ep/rbp.hpp"
#include "weft/ep/reference.hpp"
#include "weft/ep/relax.hpp"
#include "weft/ep/targets.hpp"
#include "weft/ep/train.hpp"
