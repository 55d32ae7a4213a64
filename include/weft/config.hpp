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

// The ABI namespace. Every weft entity lives in weft::WEFT_ABI_NAMESPACE, an inline namespace
// (so user code still writes weft::Tensor) whose name encodes the version, the vectorise setting
// and the instruction set the kernels are compiled for, e.g. weft::abi_v0_1_0_avx2. Two
// translation units built with different -march or WEFT_DONT_VECTORIZE / WEFT_USE_XSIMD settings
// would otherwise instantiate the same inline templates with different kernels and let the
// linker keep either copy silently (xsimd#633); with the tag, a function whose signature names a
// weft type fails to link instead. The tag follows xsimd's choice of default architecture.
#if !WEFT_VECTORIZE
#define WEFT_ABI_ISA scalar
#elif defined(__AVX512BW__) && defined(__AVX512DQ__)
#define WEFT_ABI_ISA avx512bw
#elif defined(__AVX512F__)
#define WEFT_ABI_ISA avx512f
#elif defined(__AVX2__) && defined(__FMA__)
#define WEFT_ABI_ISA fma3_avx2
#elif defined(__AVX2__)
#define WEFT_ABI_ISA avx2
#elif defined(__AVX__) && defined(__FMA__)
#define WEFT_ABI_ISA fma3_avx
#elif defined(__AVX__)
#define WEFT_ABI_ISA avx
#elif defined(__SSE4_2__)
#define WEFT_ABI_ISA sse4_2
#elif defined(__SSE4_1__)
#define WEFT_ABI_ISA sse4_1
#elif defined(__SSSE3__)
#define WEFT_ABI_ISA ssse3
#elif defined(__SSE3__)
#define WEFT_ABI_ISA sse3
#elif defined(__SSE2__) || defined(_M_X64)
#define WEFT_ABI_ISA sse2
#elif defined(__ARM_FEATURE_SVE)
#define WEFT_ABI_ISA sve
#elif defined(__aarch64__) || defined(_M_ARM64)
#define WEFT_ABI_ISA neon64
#elif defined(__ARM_NEON)
#define WEFT_ABI_ISA neon
#else
#define WEFT_ABI_ISA generic
#endif
#define WEFT_ABI_NAME_(major, minor, patch, isa) abi_v##major##_##minor##_##patch##_##isa
#define WEFT_ABI_NAME(major, minor, patch, isa) WEFT_ABI_NAME_(major, minor, patch, isa)
#define WEFT_ABI_NAMESPACE WEFT_ABI_NAME(WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR, WEFT_VERSION_PATCH, WEFT_ABI_ISA)
// Every weft header opens and closes its namespace with these two.
#define WEFT_NAMESPACE_BEGIN \
  namespace weft {           \
  inline namespace WEFT_ABI_NAMESPACE {
#define WEFT_NAMESPACE_END \
  }                        \
  }

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
