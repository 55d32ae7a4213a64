// weft/quant.hpp - low-bit quantisation-aware training after OFQ (Liu, Liu, Cheng, ICML 2023):
// the StatsQ weight quantiser, confidence-guided annealing, query-key reparameterisation, the
// LSQ / LSQ+ baselines and OFQ's activation quantiser, oscillation metrics with iterative
// freezing, wrappers for existing nn modules and integer-code export. See docs/quantization.md.
#pragma once

#include "weft/quant/activation.hpp"
#include "weft/quant/cga.hpp"
#include "weft/quant/lsq.hpp"
#include "weft/quant/qkr.hpp"
#include "weft/quant/quantizer.hpp"
#include "weft/quant/statsq.hpp"
#include "weft/quant/tracker.hpp"
#include "weft/quant/wrap.hpp"
