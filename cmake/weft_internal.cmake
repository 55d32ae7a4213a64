# Settings for weft's own tests, examples and benchmarks. Nothing here reaches the exported
# weft::weft target: users' builds get no warning flags, no -march and no sanitizers from weft.

option(WEFT_NATIVE "Compile weft's tests, examples and benchmarks with -march=native" ON)
set(WEFT_SANITIZE "" CACHE STRING "Sanitizers for weft's own programs, e.g. address,undefined")

# weft_internal_target(<target>): warnings as errors, -march=native, sanitizers. (The data path,
# WEFT_DATA_DIR, comes with weft::weft: the source tree's data/ in the build tree.)
function(weft_internal_target target)
  target_link_libraries(${target} PRIVATE weft::weft)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
    if(WEFT_NATIVE)
      target_compile_options(${target} PRIVATE -march=native)
    endif()
    if(WEFT_SANITIZE)
      target_compile_options(${target} PRIVATE -fsanitize=${WEFT_SANITIZE} -fno-omit-frame-pointer
                                               -fno-sanitize-recover=all)
      target_link_options(${target} PRIVATE -fsanitize=${WEFT_SANITIZE})
    endif()
  elseif(MSVC)
    target_compile_options(${target} PRIVATE /W4 /WX)
  endif()
endfunction()
