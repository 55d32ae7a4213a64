// The packed kernels without exceptions or RTTI: this file is compiled with -fno-exceptions
// -fno-rtti (tests/CMakeLists.txt). It runs gemm, gemm_reference and gemm_int8 on a PackedView
// over static arrays (no PackedWeights, no heap in the kernels), checks exact results, then
// triggers a failed input check that must reach the error handler:
//   deploy_no_exceptions_test  ->  "handler got ValueError: weft::deploy::gemm: expected finite inputs ..."
// Built a second time with -DWEFT_NO_ERROR_MESSAGES (deploy_no_error_messages_test): the handler
// must then get the kind and the bare "weft::deploy::gemm", nothing formatted:
//   deploy_no_error_messages_test  ->  "handler got ValueError, message-free: weft::deploy::gemm"
// and the executable must not reference std::ostringstream (ctest deploy_no_error_messages_nm).
// A plain main(), no doctest: doctest itself needs exceptions.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "weft/config.hpp"

#ifndef WEFT_NO_EXCEPTIONS
#error "weft/config.hpp must define WEFT_NO_EXCEPTIONS by itself when compiling with -fno-exceptions"
#endif

#include "weft/deploy/int8.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/packed.hpp"

namespace {

// 2 x 3 weight, 2 bits, StatsQ grid (codes -2..1 stored as u = k + 2, offset 1/2), one step per
// row: row 0 codes (-2, 1, 0) step 0.5 -> (-0.75, 0.75, 0.25); row 1 codes (1, 1, -1) step
// 0.25 -> (0.375, 0.375, -0.125). u: row 0 (0, 3, 2) -> word 0x2C; row 1 (3, 3, 1) -> 0x1F.
const weft::deploy::word_t words[2] = {0x2Cu, 0x1Fu};
const float steps[2] = {0.5f, 0.25f};
float x[3] = {1.0f, 2.0f, 4.0f};  // y = (1.75, 0.625), exact in float in any order
float y[2], yr[2], y8[2], y8r[2];
float scratch[64];
alignas(4) unsigned char scratch8[256];

void print_and_exit(weft::ErrorKind kind, const char* message) {
#ifdef WEFT_NO_ERROR_MESSAGES
  if (std::strcmp(message, "weft::deploy::gemm") != 0) {
    std::printf("FAILED: expected the bare function name, got \"%s\"\n", message);
    std::_Exit(1);
  }
  std::printf("handler got %s, message-free: %s\n", weft::to_string(kind), message);
#else
  std::printf("handler got %s: %s\n", weft::to_string(kind), message);
#endif
  std::fflush(stdout);
  std::_Exit(0);  // a handler must not return
}

}  // namespace

int main() {
  weft::deploy::PackedView<2, 0> v;
  v.rows = 2;
  v.cols = 3;
  v.words = words;
  v.steps = steps;
  v.offset = 0.5f;
  v.code_min = -2;
  v.validate();
  if (weft::deploy::gemm_scratch_size(v, 1) > 64 || weft::deploy::gemm_int8_scratch_bytes(v, 1) > 256) {
    std::printf("FAILED: scratch sizes\n");
    return 1;
  }
  weft::deploy::gemm(v, x, 1, y, nullptr, scratch);
  weft::deploy::gemm_reference(v, x, 1, yr, nullptr, scratch);
  weft::deploy::gemm_int8(v, x, 1, y8, nullptr, scratch8);
  weft::deploy::gemm_int8_reference(v, x, 1, y8r, nullptr, scratch8);
  const bool ok = y[0] == 1.75f && y[1] == 0.625f && yr[0] == 1.75f && yr[1] == 0.625f && y8[0] == y8r[0] &&
                  y8[1] == y8r[1] && std::abs(y8[0] - 1.75f) < 0.05f && std::abs(y8[1] - 0.625f) < 0.05f;
  if (!ok) {
    std::printf("FAILED: y = (%g, %g), reference (%g, %g), int8 (%g, %g) / (%g, %g)\n", y[0], y[1], yr[0], yr[1], y8[0],
                y8[1], y8r[0], y8r[1]);
    return 1;
  }
  weft::set_error_handler(&print_and_exit);
  x[1] = std::numeric_limits<float>::quiet_NaN();
  weft::deploy::gemm(v, x, 1, y, nullptr, scratch);
  std::printf("FAILED: the failed check returned to its caller\n");
  return 1;
}
