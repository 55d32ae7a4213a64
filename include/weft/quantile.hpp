// weft/quantile.hpp - quantile aggregation (Fakoor et al., JMLR 2023): levels and scores
// (pinball, WIS, interval score, coverage), base quantile models (linear quantile regression,
// Gaussian linear, kNN), out-of-fold stacking, aggregators (average, coarse, medium, fine;
// global or local), non-crossing post-processing (sort, isotonic) and split conformal
// calibration (CQR). See docs/quantile.md.
#pragma once

#include "weft/quantile/levels.hpp"
#include "weft/quantile/scores.hpp"
#include "weft/quantile/monotone.hpp"
#include "weft/quantile/models.hpp"
#include "weft/quantile/linear_qr.hpp"
#include "weft/quantile/stacking.hpp"
#include "weft/quantile/aggregator.hpp"
#include "weft/quantile/conformal.hpp"
