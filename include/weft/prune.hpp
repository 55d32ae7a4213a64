// weft/prune.hpp - unstructured pruning: magnitude, Wanda and OBS/SparseGPT scores, masks (per
// matrix, row, column block, N:M), calibration by forward hooks, frozen mask transforms, and
// D-Pruner's dual importance (Zhang et al., Findings of NAACL 2024). See docs/pruning.md.
#pragma once

#include "weft/prune/attach.hpp"
#include "weft/prune/calibration.hpp"
#include "weft/prune/dpruner.hpp"
#include "weft/prune/hessian.hpp"
#include "weft/prune/kernels.hpp"
#include "weft/prune/mask.hpp"
#include "weft/prune/scores.hpp"
#include "weft/prune/select.hpp"
#include "weft/prune/sparsegpt.hpp"
