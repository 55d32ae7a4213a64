// weft without exceptions: this file is compiled with -fno-exceptions (tests/CMakeLists.txt)
// and run twice by ctest:
//   core_no_exceptions_test handler  installs a handler with weft::set_error_handler, then
//                                    triggers a failed shape check in matmul; the handler
//                                    prints "handler got <Kind>: <message>" and exits with 0.
//   core_no_exceptions_test default  triggers the same check under the default handler, which
//                                    prints the message and aborts (ctest expects a failure).
//                                    CTest does not count a signal as the failure WILL_FAIL
//                                    wants, so a SIGABRT handler turns the abort into exit
//                                    code 134 (what a shell reports for SIGABRT).
// A plain main(), no doctest: doctest itself needs exceptions.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "weft/config.hpp"

#ifndef WEFT_NO_EXCEPTIONS
#error "weft/config.hpp must define WEFT_NO_EXCEPTIONS by itself when compiling with -fno-exceptions"
#endif
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "core/no_exceptions_test.cpp must be compiled with -fno-exceptions"
#endif

#include "weft/core/autograd.hpp"

namespace {

void print_and_exit(weft::ErrorKind kind, const char* message) {
  std::printf("handler got %s: %s\n", weft::to_string(kind), message);
  std::fflush(stdout);
  std::_Exit(0);  // a handler must not return
}

/// A correct forward and backward through the tape, to show weft works without exceptions.
bool tape_works() {
  weft::Tape<double> tape;
  auto a = tape.variable(weft::Tensor<double>::from_values({1, 2, 3, 4, 5, 6}, weft::Shape{2, 3}));
  auto b = tape.variable(weft::Tensor<double>::full(weft::Shape{3, 2}, 0.5));
  auto loss = weft::sum(weft::matmul(a, b));
  tape.backward(loss);
  // loss = 0.5 * 2 * sum(a) = 21; d loss / d a = 0.5 * 2 = 1 everywhere
  bool ok = loss.item() == 21.0;
  for (double g : a.grad()) ok = ok && g == 1.0;
  return ok;
}

/// matmul of (2, 3) by (4, 5): "weft::matmul: expected matching inner extents ...".
void trigger_shape_error() {
  weft::Tape<double> tape;
  auto a = tape.variable(weft::Tensor<double>(weft::Shape{2, 3}));
  auto b = tape.variable(weft::Tensor<double>(weft::Shape{4, 5}));
  (void)weft::matmul(a, b);
}

extern "C" void on_abort(int) { std::_Exit(128 + SIGABRT); }  // async-signal-safe

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (!tape_works()) {
    std::printf("FAILED: the tape gave wrong values without exceptions\n");
    return 1;
  }
  if (std::strcmp(mode, "handler") == 0) {
    const weft::error_handler_t previous = weft::set_error_handler(&print_and_exit);
    if (previous == nullptr || weft::set_error_handler(&print_and_exit) != &print_and_exit) {
      std::printf("FAILED: set_error_handler did not return the previous handler\n");
      return 1;
    }
    trigger_shape_error();
    std::printf("FAILED: the failed check returned to its caller\n");
    return 1;
  }
  if (std::strcmp(mode, "default") == 0) {
    weft::set_error_handler(nullptr);  // the default: print and abort
    std::signal(SIGABRT, &on_abort);
    trigger_shape_error();
    std::printf("FAILED: the default handler did not abort\n");
    return 0;  // exit code 0 makes the WILL_FAIL test fail
  }
  std::printf("usage: %s handler|default\n", argc > 0 ? argv[0] : "core_no_exceptions_test");
  return 2;
}
