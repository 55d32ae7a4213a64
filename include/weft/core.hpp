// weft/core.hpp - the tensor core: Tensor, Shape, errors, Rng and initialisers, parallel_for,
// the autograd (tape, parameters, every differentiable op, grad_check), CSV/.npy IO and the
// small data sets. Include single headers under weft/core/ to pull in less.
#pragma once

#include "weft/config.hpp"
#include "weft/core/error.hpp"
#include "weft/core/shape.hpp"
#include "weft/core/tensor.hpp"
#include "weft/core/rng.hpp"
#include "weft/core/parallel.hpp"
#include "weft/core/autograd.hpp"
#include "weft/core/io/csv.hpp"
#include "weft/core/io/npy.hpp"
#include "weft/core/data.hpp"
