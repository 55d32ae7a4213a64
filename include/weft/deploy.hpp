// weft/deploy.hpp - deployment of quantised layers: packed low-bit weights (deploy/packed.hpp),
// their GEMV/GEMM kernels with float or int8 activations (deploy/kernels.hpp, Tensor forms in
// deploy/linear.hpp), the no-heap inference stack deploy::Model (deploy/model.hpp) and the packer of
// quant::export_weights' output (deploy/from_quant.hpp). docs/deploy.md explains the formats.
#pragma once

#include "weft/deploy/from_quant.hpp"
#include "weft/deploy/int8.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/linear.hpp"
#include "weft/deploy/model.hpp"
#include "weft/deploy/packed.hpp"
