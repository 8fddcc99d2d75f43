# libchatdispatch's tests (included by ../CMakeLists.txt when built alone or with
# BUILD_TESTING). Three configurations, each in its own build folder
# (tests/run_all.sh runs them all; scripts/test.sh calls it):
#
#   plain (default)   the library as shipped (Release, stripped): unit tests,
#                     concurrency test, exported symbols, and the fuzz target's
#                     deterministic driver (built with ASan+UBSan when the
#                     compiler has them);
#   -DCHATDISPATCH_SANITIZE=thread
#                     library and tests under ThreadSanitizer;
#   -DCHATDISPATCH_SANITIZE=address,undefined [-DCHATDISPATCH_LIBFUZZER=ON]
#                     library and tests under ASan+UBSan; with clang, also the
#                     libFuzzer target run corpus-free for CHATDISPATCH_FUZZ_SECONDS.
include(CheckCSourceCompiles)

set(CHATDISPATCH_SANITIZE "" CACHE STRING
  "Build the library and its tests with -fsanitize=<this> (address,undefined or thread)")
option(CHATDISPATCH_LIBFUZZER "Build and run the libFuzzer target (clang only)" OFF)
set(CHATDISPATCH_FUZZ_SECONDS 20 CACHE STRING "libFuzzer run time in CTest (-max_total_time)")
set(CHATDISPATCH_FUZZ_RUNS 10000 CACHE STRING "Random inputs of the deterministic fuzz driver")
set(CHATDISPATCH_FUZZ_SEED 1 CACHE STRING "Seed of the deterministic fuzz driver")
set(CHATDISPATCH_THREADS_SECONDS 2 CACHE STRING "How long the concurrency test runs")

enable_testing()
set(CD_TEST_WARNINGS -Wall -Wextra)
# allocator_may_return_null: test_no_memory_is_an_overflow asks for a buffer no allocator
# can give; the sanitizers' allocators then return NULL as glibc's does, instead of aborting.
set(CD_ASAN_ENV
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
set(CD_TSAN_ENV "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:allocator_may_return_null=1")

# Can this compiler build and link with these flags? (result in VAR)
function(cd_check_flags var flags)
  set(CMAKE_REQUIRED_FLAGS "${flags}")
  separate_arguments(CMAKE_REQUIRED_LINK_OPTIONS UNIX_COMMAND "${flags}")
  if(flags MATCHES "fuzzer")
    check_c_source_compiles("
      #include <stddef.h>
      #include <stdint.h>
      int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return (int)(n && d[0]); }"
      ${var})
  else()
    check_c_source_compiles("int main(void) { return 0; }" ${var})
  endif()
endfunction()

# ---- the sanitizer of this configuration: the library and every test ----------------
set(CD_SAN_FLAGS "")
set(CD_SAN_ENV "")
if(CHATDISPATCH_SANITIZE)
  set(CD_SAN_FLAGS -fsanitize=${CHATDISPATCH_SANITIZE} -fno-sanitize-recover=all
      -fno-omit-frame-pointer -g)
  string(REPLACE ";" " " flags "${CD_SAN_FLAGS}")
  cd_check_flags(CD_HAVE_REQUESTED_SANITIZER "${flags}")
  if(NOT CD_HAVE_REQUESTED_SANITIZER)
    message(FATAL_ERROR "${CMAKE_C_COMPILER} cannot build with -fsanitize=${CHATDISPATCH_SANITIZE}")
  endif()
  target_compile_options(chatdispatch PRIVATE ${CD_SAN_FLAGS})
  target_link_options(chatdispatch PRIVATE -fsanitize=${CHATDISPATCH_SANITIZE})
  if(CHATDISPATCH_SANITIZE MATCHES "thread")
    set(CD_SAN_ENV ${CD_TSAN_ENV})
  else()
    set(CD_SAN_ENV ${CD_ASAN_ENV})
  endif()
endif()

function(cd_test_program name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE chatdispatch Threads::Threads)
  set_target_properties(${name} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
  target_compile_options(${name} PRIVATE ${CD_TEST_WARNINGS} ${CD_SAN_FLAGS})
  if(CHATDISPATCH_SANITIZE)
    target_link_options(${name} PRIVATE -fsanitize=${CHATDISPATCH_SANITIZE})
  endif()
endfunction()

# ---- unit and concurrency tests, against the shared library ---------------------------
cd_test_program(test_dispatch tests/test_dispatch.c)
add_test(NAME dispatch_unit COMMAND test_dispatch)
cd_test_program(test_concurrency tests/test_concurrency.c)
add_test(NAME dispatch_concurrency COMMAND test_concurrency ${CHATDISPATCH_THREADS_SECONDS})
set_tests_properties(dispatch_unit dispatch_concurrency PROPERTIES TIMEOUT 120)
if(CD_SAN_ENV)
  set_tests_properties(dispatch_unit dispatch_concurrency PROPERTIES ENVIRONMENT "${CD_SAN_ENV}")
endif()

# ---- the exported dynamic symbols are exactly the header's functions --------------------
if(NOT CHATDISPATCH_SANITIZE)
  find_program(NM_TOOL NAMES nm)
  if(NM_TOOL)
    add_test(NAME dispatch_exports_only_abi
      COMMAND ${CMAKE_COMMAND} -DNM=${NM_TOOL} -DLIB=$<TARGET_FILE:chatdispatch>
              -DHEADER=${CMAKE_CURRENT_SOURCE_DIR}/include/chat_dispatch.h
              -P ${CMAKE_CURRENT_SOURCE_DIR}/tests/check_exports.cmake)
  endif()
endif()

# ---- the fuzz target's deterministic driver (dispatch.c compiled in, ASan+UBSan) ---------
# Not under ThreadSanitizer (it cannot be combined with ASan, and the driver has one thread).
if(NOT CHATDISPATCH_SANITIZE MATCHES "thread")
  set(CD_DRIVER_FLAGS "")
  set(CD_DRIVER_ENV "")
  if(CHATDISPATCH_SANITIZE MATCHES "address")
    set(CD_DRIVER_FLAGS ${CD_SAN_FLAGS})
    set(CD_DRIVER_ENV ${CD_ASAN_ENV})
  else()
    cd_check_flags(CD_HAVE_ASAN_UBSAN "-fsanitize=address,undefined -fno-sanitize-recover=all")
    if(CD_HAVE_ASAN_UBSAN)
      set(CD_DRIVER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all
          -fno-omit-frame-pointer -g)
      set(CD_DRIVER_ENV ${CD_ASAN_ENV})
    else()
      message(WARNING "no ASan/UBSan with ${CMAKE_C_COMPILER}: the fuzz driver runs without them")
    endif()
  endif()
  add_executable(fuzz_dispatch_driver tests/fuzz_dispatch.c dispatch.c)
  target_include_directories(fuzz_dispatch_driver PRIVATE include)
  target_link_libraries(fuzz_dispatch_driver PRIVATE Threads::Threads)
  set_target_properties(fuzz_dispatch_driver PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
  target_compile_options(fuzz_dispatch_driver PRIVATE ${CD_TEST_WARNINGS} -O1 ${CD_DRIVER_FLAGS})
  if(CD_DRIVER_FLAGS)
    list(FILTER CD_DRIVER_FLAGS INCLUDE REGEX "^-fsanitize=")
    target_link_options(fuzz_dispatch_driver PRIVATE ${CD_DRIVER_FLAGS})
  endif()
  add_test(NAME dispatch_fuzz_driver
    COMMAND fuzz_dispatch_driver --runs ${CHATDISPATCH_FUZZ_RUNS} --seed ${CHATDISPATCH_FUZZ_SEED})
  # Inputs that once found a bug (tests/regressions/*.bin), replayed every time.
  file(GLOB CD_REGRESSIONS ${CMAKE_CURRENT_SOURCE_DIR}/tests/regressions/*.bin)
  add_test(NAME dispatch_fuzz_regressions COMMAND fuzz_dispatch_driver ${CD_REGRESSIONS})
  set_tests_properties(dispatch_fuzz_driver dispatch_fuzz_regressions PROPERTIES TIMEOUT 180)
  if(CD_DRIVER_ENV)
    set_tests_properties(dispatch_fuzz_driver dispatch_fuzz_regressions
      PROPERTIES ENVIRONMENT "${CD_DRIVER_ENV}")
  endif()
endif()

# ---- libFuzzer: corpus-free, bounded in time -------------------------------------------------
if(CHATDISPATCH_LIBFUZZER)
  if(NOT CHATDISPATCH_FUZZ_SECONDS MATCHES "^[0-9]+$")
    message(FATAL_ERROR "CHATDISPATCH_FUZZ_SECONDS must be a number of seconds, "
      "not '${CHATDISPATCH_FUZZ_SECONDS}'")
  endif()
  set(CD_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  cd_check_flags(CD_HAVE_LIBFUZZER "-fsanitize=fuzzer,address,undefined")
  if(NOT CD_HAVE_LIBFUZZER)
    message(FATAL_ERROR "CHATDISPATCH_LIBFUZZER needs clang with libFuzzer "
      "(Debian: apt-get install clang libclang-rt-dev), not ${CMAKE_C_COMPILER}")
  endif()
  add_executable(fuzz_dispatch_libfuzzer tests/fuzz_dispatch.c dispatch.c)
  target_include_directories(fuzz_dispatch_libfuzzer PRIVATE include)
  target_compile_definitions(fuzz_dispatch_libfuzzer PRIVATE LIBFUZZER_BUILD)
  target_link_libraries(fuzz_dispatch_libfuzzer PRIVATE Threads::Threads)
  set_target_properties(fuzz_dispatch_libfuzzer PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
  target_compile_options(fuzz_dispatch_libfuzzer PRIVATE ${CD_TEST_WARNINGS} -O1 -g
    -fno-omit-frame-pointer ${CD_FUZZ_FLAGS})
  target_link_options(fuzz_dispatch_libfuzzer PRIVATE ${CD_FUZZ_FLAGS})
  set(CD_ARTIFACTS ${CMAKE_CURRENT_BINARY_DIR}/fuzz-artifacts/)
  file(MAKE_DIRECTORY ${CD_ARTIFACTS})
  add_test(NAME dispatch_libfuzzer
    COMMAND fuzz_dispatch_libfuzzer -max_total_time=${CHATDISPATCH_FUZZ_SECONDS} -max_len=4096
            -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=${CD_ARTIFACTS})
  math(EXPR CD_FUZZ_TIMEOUT "${CHATDISPATCH_FUZZ_SECONDS} + 60")
  # COST: started first, so that `ctest -j2` runs the other tests beside it.
  set_tests_properties(dispatch_libfuzzer PROPERTIES TIMEOUT ${CD_FUZZ_TIMEOUT}
    ENVIRONMENT "${CD_ASAN_ENV}" COST 1000)
endif()
