// tests/prune/prune_test_util.hpp - helpers shared by the prune tests: an error check that names
// the function, a thread-count guard, and a tiny character-window model for pipeline tests.
#pragma once

#include <doctest/doctest.h>

#include "support/test_util.hpp"
#include "weft/core/parallel.hpp"

/// CHECK that `expr` throws `type` whose message starts with "weft::<func>: ".
#define WEFT_PRUNE_CHECK_FAILS(expr, type, func) \
  CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace weft::prune_test {

using weft::test::ThreadCountGuard;

}  // namespace weft::prune_test
