// weft/phm.hpp - PHM and low-rank PHM layers with Kronecker-sum kernels, and the Compacter,
// Compacter++ and PHM-Adapter adapters (Karimi Mahabadi et al., NeurIPS 2021). See
// docs/compacter.md.
#pragma once

#include "weft/phm/adapter.hpp"
#include "weft/phm/count.hpp"
#include "weft/phm/functional.hpp"
#include "weft/phm/layer.hpp"
#include "weft/phm/path.hpp"
#include "weft/phm/rule.hpp"
