# cmake -DCMD=<program> -DARGS=<;-list> -DEXPECT=<regex> -P expect_failure.cmake
# Passes when the program exits non-zero AND its output (stdout + stderr) matches EXPECT: a
# rejected command line must fail with a message that says why.
execute_process(COMMAND ${CMD} ${ARGS} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "expected ${CMD} ${ARGS} to fail, it exited 0:\n${out}${err}")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "expected the output of ${CMD} ${ARGS} to match '${EXPECT}', got:\n${out}${err}")
endif()
message(STATUS "${CMD} ${ARGS}: exit ${rc}, message matches '${EXPECT}'")
