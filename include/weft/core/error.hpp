// weft/core/error.hpp - the weft::Error hierarchy, the check macros and the error handler.
//
// Every argument check in weft goes through WEFT_CHECK / weft::detail::fail. With exceptions
// (the default) a failed check throws one of:
//   weft::Error       base class (derives from std::runtime_error)
//   weft::ShapeError  shapes or ranks that do not fit together, empty inputs
//   weft::ValueError  bad values: NaN/Inf where not allowed, out-of-range numbers
//   weft::ConfigError invalid options or an object used in a state that does not allow it
//   weft::IoError     files that cannot be opened, are truncated, or hold an unsupported format
// The message always names the function, what was expected and what came, e.g.
//   "weft::matmul: expected a.shape[1] == b.shape[0], got a (3, 4) and b (5, 2)".
// With WEFT_NO_EXCEPTIONS the same checks call the error handler installed with
// weft::set_error_handler(); the default handler prints the message and aborts. A handler
// must not return (if it does, weft aborts).
// With WEFT_NO_ERROR_MESSAGES (config.hpp) a failed check formats nothing: the handler (or the
// exception) gets the kind, which is the error code, and the message "weft::<func>" copied into
// a fixed buffer (detail::fail_code); the check's message parts are not evaluated, and no
// std::ostringstream is referenced, so a device image does not link iostreams.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "weft/config.hpp"

WEFT_NAMESPACE_BEGIN

enum class ErrorKind { generic, shape, value, config, io };

inline const char* to_string(ErrorKind k) noexcept {
  switch (k) {
    case ErrorKind::shape: return "ShapeError";
    case ErrorKind::value: return "ValueError";
    case ErrorKind::config: return "ConfigError";
    case ErrorKind::io: return "IoError";
    default: return "Error";
  }
}

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, ErrorKind kind = ErrorKind::generic)
      : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};
class ShapeError : public Error {
 public:
  explicit ShapeError(const std::string& what) : Error(what, ErrorKind::shape) {}
};
class ValueError : public Error {
 public:
  explicit ValueError(const std::string& what) : Error(what, ErrorKind::value) {}
};
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& what) : Error(what, ErrorKind::config) {}
};
class IoError : public Error {
 public:
  explicit IoError(const std::string& what) : Error(what, ErrorKind::io) {}
};

/// Signature of the handler that receives failed checks when exceptions are off.
using error_handler_t = void (*)(ErrorKind kind, const char* message);

namespace detail {
inline void default_error_handler(ErrorKind kind, const char* message) {
  std::fprintf(stderr, "weft %s: %s\n", to_string(kind), message);
  std::fflush(stderr);
  std::abort();
}
inline error_handler_t& error_handler_slot() noexcept {
  static error_handler_t handler = &default_error_handler;
  return handler;
}
}  // namespace detail

/// Installs the handler for failed checks in WEFT_NO_EXCEPTIONS builds (with exceptions it is
/// only called if you call it yourself). Returns the previous handler. nullptr restores the
/// default (print and abort).
inline error_handler_t set_error_handler(error_handler_t h) noexcept {
  error_handler_t old = detail::error_handler_slot();
  detail::error_handler_slot() = h ? h : &detail::default_error_handler;
  return old;
}

namespace detail {

/// Raises an error of the given kind. Cold and out of line so checks cost one branch.
[[noreturn]] WEFT_COLD inline void raise(ErrorKind kind, const std::string& message) {
#ifndef WEFT_NO_EXCEPTIONS
  switch (kind) {
    case ErrorKind::shape: throw ShapeError(message);
    case ErrorKind::value: throw ValueError(message);
    case ErrorKind::config: throw ConfigError(message);
    case ErrorKind::io: throw IoError(message);
    default: throw Error(message);
  }
#else
  error_handler_slot()(kind, message.c_str());
  std::abort();  // a handler must not return
#endif
}

/// The message-free failure of WEFT_NO_ERROR_MESSAGES: "weft::<func>" (cut at 127 characters)
/// in a buffer on the stack, no formatting, no allocation before the handler.
[[noreturn]] WEFT_COLD inline void fail_code(ErrorKind kind, const char* func) {
  char message[128] = "weft::";
  std::size_t n = 6;
  for (const char* p = func; p && *p && n + 1 < sizeof message; ++p) message[n++] = *p;
  message[n] = '\0';
#ifndef WEFT_NO_EXCEPTIONS
  raise(kind, message);
#else
  error_handler_slot()(kind, message);
  std::abort();  // a handler must not return
#endif
}

inline void append_all(std::ostringstream&) {}
template <class A, class... R>
void append_all(std::ostringstream& os, const A& a, const R&... rest) {
  os << a;
  append_all(os, rest...);
}

/// Builds "weft::<func>: <parts...>" and raises it.
template <class... Parts>
[[noreturn]] WEFT_COLD void fail(ErrorKind kind, const char* func, const Parts&... parts) {
  std::ostringstream os;
  os << "weft::" << func << ": ";
  append_all(os, parts...);
  raise(kind, os.str());
}

}  // namespace detail
WEFT_NAMESPACE_END

/// WEFT_CHECK(cond, kind, func, parts...): if !cond, raise kind ("shape", "value", "config",
/// "io") with the message "weft::func: parts...". The parts are streamed with operator<<.
/// With WEFT_NO_ERROR_MESSAGES the parts are not evaluated and the message is "weft::func".
#ifdef WEFT_NO_ERROR_MESSAGES
#define WEFT_CHECK(cond, kind, func, ...)                                              \
  do {                                                                                 \
    if (WEFT_UNLIKELY(!(cond))) ::weft::detail::fail_code(::weft::ErrorKind::kind, func); \
  } while (0)
#else
#define WEFT_CHECK(cond, kind, func, ...)                                                  \
  do {                                                                                     \
    if (WEFT_UNLIKELY(!(cond))) ::weft::detail::fail(::weft::ErrorKind::kind, func, __VA_ARGS__); \
  } while (0)
#endif

/// Internal invariant, compiled out unless WEFT_ENABLE_ASSERTS.
#if WEFT_ENABLE_ASSERTS && defined(WEFT_NO_ERROR_MESSAGES)
#define WEFT_ASSERT(cond)                                                                     \
  do {                                                                                        \
    if (WEFT_UNLIKELY(!(cond))) ::weft::detail::fail_code(::weft::ErrorKind::generic, "internal"); \
  } while (0)
#elif WEFT_ENABLE_ASSERTS
#define WEFT_ASSERT(cond)                                                                   \
  do {                                                                                      \
    if (WEFT_UNLIKELY(!(cond)))                                                             \
      ::weft::detail::fail(::weft::ErrorKind::generic, "internal", "assertion failed: " #cond, \
                           " at " __FILE__ ":", __LINE__);                                  \
  } while (0)
#else
#define WEFT_ASSERT(cond) ((void)0)
#endif
