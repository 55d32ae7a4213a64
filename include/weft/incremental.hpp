// weft/incremental.hpp - class-incremental learning with Weight Aligning (Zhao et al., CVPR 2020):
// an expandable classifier head, the CE + KD loss against a frozen previous model, exemplar
// memory with herding under a fixed budget, weight clipping and Weight Aligning, and a learner
// that runs a task sequence. See docs/incremental.md.
#pragma once

#include "weft/incremental/align.hpp"
#include "weft/incremental/distill.hpp"
#include "weft/incremental/head.hpp"
#include "weft/incremental/learner.hpp"
#include "weft/incremental/memory.hpp"
#include "weft/incremental/model.hpp"
