# The libFuzzer targets of tests/fuzz, one source file <name>.cpp each. Read by tests/fuzz's own
# project (which builds them with clang) and by tests/CMakeLists.txt (which runs them). Each
# target's seed inputs are in corpus/<name without _fuzz>/.
set(WEFT_FUZZ_TARGETS npy_fuzz csv_fuzz safetensors_fuzz)
