// weft/ordinal.hpp - ordinal regression for rare classes: the cumulative-logit model, PRESTO
// (Faletto & Bien, ICML 2023: L1 shrinkage of adjacent boundary differences towards
// proportional odds) with its lambda path and Brier-score cross-validation, the
// proportional-odds MLE and per-boundary (lasso) logistic baselines, the paper's simulation
// designs and two real data sets. See docs/ordinal.md.
#pragma once

#include "weft/ordinal/model.hpp"
#include "weft/ordinal/kernels.hpp"
#include "weft/ordinal/likelihood.hpp"
#include "weft/ordinal/solver.hpp"
#include "weft/ordinal/presto.hpp"
#include "weft/ordinal/inference.hpp"
#include "weft/ordinal/baselines.hpp"
#include "weft/ordinal/simulate.hpp"
#include "weft/ordinal/datasets.hpp"
