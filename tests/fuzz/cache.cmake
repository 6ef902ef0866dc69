# Initial cache for the fuzz tree (docs/testing.md, "Fuzzing"):
#   cmake -S . -B build/build-fuzz -G Ninja -C tests/fuzz/cache.cmake
# clang, with every object instrumented for libFuzzer's coverage feedback,
# AddressSanitizer and UndefinedBehaviorSanitizer; any UB report aborts, so
# the fuzzer records it as a crash.
set(CMAKE_CXX_COMPILER clang++ CACHE STRING "")
set(CMAKE_BUILD_TYPE Fuzz CACHE STRING "")
set(CMAKE_CXX_FLAGS_FUZZ
    "-O1 -gline-tables-only -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all"
    CACHE STRING "")
set(CMAKE_EXE_LINKER_FLAGS_FUZZ "-fsanitize=address,undefined" CACHE STRING "")
set(CMAKE_SHARED_LINKER_FLAGS_FUZZ "-fsanitize=address,undefined" CACHE STRING "")
set(SLUICE_FUZZ ON CACHE BOOL "")
