// A consumer of weft: trains y = 2x + 1 with one Linear weight, round-trips the weights through
// safetensors (so the package's nlohmann_json dependency is found) and prints "consumer ok".
#include <cmath>
#include <cstdio>

#include "weft/core/autograd.hpp"
#include "weft/core/io/safetensors.hpp"

int main() {
  using namespace weft;
  Parameter<double> w(Tensor<double>::from_values({0.0}, Shape{1, 1}), "w");
  Parameter<double> b(Tensor<double>::vector_of({0.0}), "b");
  Tensor<double> x = Tensor<double>::from_values({-1, 0, 1, 2}, Shape{4, 1});
  Tensor<double> y = Tensor<double>::from_values({-1, 1, 3, 5}, Shape{4, 1});
  Tape<double> tape;
  for (int step = 0; step < 500; ++step) {
    w.zero_grad();
    b.zero_grad();
    Var<double> loss = mse(linear(tape.constant(x), tape.param(w), tape.param(b)), tape.constant(y));
    tape.backward(loss);
    w.value().array() -= 0.1 * w.grad().array();
    b.value().array() -= 0.1 * b.grad().array();
    tape.reset();
  }
  const double wv = w.value().flat(0), bv = b.value().flat(0);
  std::printf("w = %.6f, b = %.6f (weft %s)\n", wv, bv, WEFT_VERSION_STRING);
  if (std::abs(wv - 2) > 1e-6 || std::abs(bv - 1) > 1e-6) return 1;
  const auto bytes = safetensors_bytes({safetensors_entry("w", w.value()), safetensors_entry("b", b.value())});
  const SafetensorsFile f = load_safetensors_bytes(bytes.data(), bytes.size());
  if (f.tensor<double>("w").flat(0) != wv || f.tensor<double>("b").flat(0) != bv) return 1;
  std::printf("consumer ok\n");
  return 0;
}
