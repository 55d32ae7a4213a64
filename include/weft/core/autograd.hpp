// weft/core/autograd.hpp - the reverse-mode autograd: tape, parameters, every differentiable op
// and grad_check. Include a single functions/ header instead to pull in less.
#pragma once

#include "weft/core/autograd/tape.hpp"
#include "weft/core/autograd/parameter.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/attention.hpp"
#include "weft/core/autograd/grad_check.hpp"
