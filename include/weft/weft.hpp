// weft/weft.hpp - everything: the core and nn layers and every technique family.
// For users only: weft's own headers never include it. Including the family headers you need
// (weft/core.hpp, weft/nn.hpp, weft/quant.hpp, ...) compiles faster.
#pragma once

#include "weft/core.hpp"
#include "weft/nn.hpp"
#include "weft/reparam.hpp"
#include "weft/quantile.hpp"
#include "weft/ordinal.hpp"
#include "weft/incremental.hpp"
#include "weft/peft.hpp"
#include "weft/phm.hpp"
#include "weft/prune.hpp"
#include "weft/quant.hpp"
#include "weft/deploy.hpp"
#include "weft/ep.hpp"
