#include <cstdio>

#include "probe.hpp"

int main() {
  weft::Tensor<float> t = weft::Tensor<float>::from_values({1, 2, 3}, weft::Shape{3});
  const float s = probe_sum(t);
  std::printf("abi probe %s (sum %g)\n", s == 6.0f ? "ok" : "wrong", double(s));
  return s == 6.0f ? 0 : 1;
}
