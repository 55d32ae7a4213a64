// weft/config.hpp - every WEFT_* configuration macro with its default, and the version.
//
// Define a macro before including any weft header (or through the build system) to change
// it. The same table, with the reasoning, is in docs/config.md. All translation units of one
// program must see the same values: the macros select code inside inline templates.
#pragma once

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0
#define WEFT_VERSION_STRING "0.1.0"

// WEFT_USE_XSIMD (default: 1 when <xsimd/xsimd.hpp> is available, else 0)
//   Enables the xsimd-vectorised kernels. The CMake target sets it from WEFT_WITH_XSIMD.
#ifndef WEFT_USE_XSIMD
#if defined(__has_include)
#if __has_include(<xsimd/xsimd.hpp>)
#define WEFT_USE_XSIMD 1
#else
#define WEFT_USE_XSIMD 0
#endif
#else
#define WEFT_USE_XSIMD 0
#endif
#endif

// WEFT_DONT_VECTORIZE (default: undefined)
//   When defined, every kernel takes its plain scalar path even if xsimd is available. The
//   scalar paths are always compiled, so tests can compare both in one binary.
#if defined(WEFT_DONT_VECTORIZE) || !WEFT_USE_XSIMD
#define WEFT_VECTORIZE 0
#else
#define WEFT_VECTORIZE 1
#endif

// WEFT_USE_OPENMP (default: 1 when the compiler runs with OpenMP (_OPENMP), else 0)
//   parallel_for spreads work over OpenMP threads. The CMake target sets it from
//   WEFT_WITH_OPENMP. With 0, every loop runs on the calling thread.
#ifndef WEFT_USE_OPENMP
#if defined(_OPENMP)
#define WEFT_USE_OPENMP 1
#else
#define WEFT_USE_OPENMP 0
#endif
#endif

// WEFT_NO_EXCEPTIONS (default: defined when the compiler runs without exceptions)
//   Checks call the replaceable error handler (weft::set_error_handler) instead of throwing.
//   The default handler prints the message to stderr and aborts.
#if !defined(WEFT_NO_EXCEPTIONS) && !defined(__cpp_exceptions) && !defined(__EXCEPTIONS)
#define WEFT_NO_EXCEPTIONS
#endif

// WEFT_NO_ERROR_MESSAGES (default: not defined)
//   Failed checks report only their kind (weft::ErrorKind: the error code) and the function
//   name, "weft::<function>", without formatting the values: WEFT_CHECK then neither evaluates
//   its message parts nor references std::ostringstream, so a device image does not link the
//   iostream and locale code (core/error.hpp, docs/deploy.md). Works with and without
//   exceptions; meant for WEFT_NO_EXCEPTIONS builds with an error handler.

// WEFT_ENABLE_ASSERTS (default: 1 unless NDEBUG is defined)
//   Internal consistency asserts (unchecked element access, internal invariants). Argument
//   checks of public functions are never disabled: they are cheap next to the work they guard.
#ifndef WEFT_ENABLE_ASSERTS
#ifdef NDEBUG
#define WEFT_ENABLE_ASSERTS 0
#else
#define WEFT_ENABLE_ASSERTS 1
#endif
#endif

// WEFT_ARENA_BLOCK_BYTES (default: 1 MiB)
//   Size of the first block of an autograd tape's arena. The arena grows by extra blocks in
//   the first step and coalesces them into one block on reset, so later steps do not allocate.
#ifndef WEFT_ARENA_BLOCK_BYTES
#define WEFT_ARENA_BLOCK_BYTES (std::size_t(1) << 20)
#endif

// WEFT_PARALLEL_GRAIN (default: 32768)
//   Default minimum number of elements per thread chunk in parallel_for. Below it, loops run
//   on the calling thread: spawning threads costs more than it saves.
#ifndef WEFT_PARALLEL_GRAIN
#define WEFT_PARALLEL_GRAIN 32768
#endif

// Alignment, in bytes, of every buffer a Tensor allocates (one AVX-512 register / cache line).
#define WEFT_ALIGNMENT 64

#if defined(__GNUC__) || defined(__clang__)
#define WEFT_NOINLINE __attribute__((noinline))
#define WEFT_COLD __attribute__((cold, noinline))
#define WEFT_LIKELY(x) __builtin_expect(!!(x), 1)
#define WEFT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define WEFT_NOINLINE
#define WEFT_COLD
#define WEFT_LIKELY(x) (x)
#define WEFT_UNLIKELY(x) (x)
#endif
