// The function both translation units agree on by name; its parameter is a weft type.
#pragma once
#include "weft/core/tensor.hpp"

float probe_sum(const weft::Tensor<float>& t);
