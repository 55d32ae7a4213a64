# Runs abort_probe on 2 ranks; passes when the job fails (non-zero) and names rank 1 and the
# message. A hang is caught by the ctest TIMEOUT.
execute_process(COMMAND ${MPIEXEC} -n 2 ${PROBE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 90)
set(all "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "expected the job to abort, got exit code 0:\n${all}")
endif()
if(NOT all MATCHES "weft::dist: rank 1 of 2: probe failure on purpose")
  message(FATAL_ERROR "expected 'weft::dist: rank 1 of 2: probe failure on purpose' in the output, got (exit ${rc}):\n${all}")
endif()
message(STATUS "the job aborted with exit code ${rc} and named the rank")
