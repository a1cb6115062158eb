# One place that declares every tessera library, test, benchmark and program, so that
# warnings, sanitizers and include paths stay uniform (in the spirit of absl_cc_library).
include(CMakeParseArguments)

function(tessera_apply_flags target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(TESSERA_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(TESSERA_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${TESSERA_SANITIZE} -fno-omit-frame-pointer -g)
    target_link_options(${target} PRIVATE -fsanitize=${TESSERA_SANITIZE})
  endif()
  if(TESSERA_SANITIZE OR TESSERA_ASSERTS OR CMAKE_BUILD_TYPE STREQUAL "Debug")
    target_compile_definitions(${target} PRIVATE TESSERA_ENABLE_ASSERTS=1)
  endif()
endfunction()

# tessera_library(<layer> SRCS ...): the sources of one layer, compiled once and linked into
# the single libtessera.
function(tessera_library layer)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  set(target tessera_${layer})
  add_library(${target} OBJECT ${ARG_SRCS})
  target_include_directories(${target}
    PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    PRIVATE ${PROJECT_SOURCE_DIR}/src ${MSGPACK_INCLUDE_DIR})
  target_compile_definitions(${target} PRIVATE MSGPACK_NO_BOOST=1)
  target_link_libraries(${target} PRIVATE fmt::fmt PkgConfig::XXHASH Threads::Threads ${ARG_DEPS})
  tessera_apply_flags(${target})
  set_property(GLOBAL APPEND PROPERTY TESSERA_LAYERS ${target})
endfunction()

# tessera_test(<name> SRCS ... [LABELS ...]): one gtest binary per layer; each test case is
# registered with ctest at test time.
function(tessera_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SRCS;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE tessera::tessera GTest::gtest GTest::gmock GTest::gtest_main fmt::fmt ${ARG_LIBS})
  tessera_apply_flags(${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    EXTRA_ARGS --gtest_color=no)
endfunction()

# tessera_benchmark(<name> SRCS ...): a benchmark program run by benchmarks/run.
function(tessera_benchmark name)
  cmake_parse_arguments(ARG "" "" "SRCS;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/benchmarks)
  target_link_libraries(${name} PRIVATE ${ARG_LIBS})
  tessera_apply_flags(${name})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/benchmarks)
endfunction()

# tessera_use_mimalloc(<target>): the executable allocates with mimalloc (when found and
# TESSERA_MIMALLOC is on). It must come before libc among the executable's libraries, which
# linking it directly ensures; the check at run time is MIMALLOC_VERBOSE=1. A program that
# runs workers under a memory limit should return freed memory to the OS at once, as
# tessera-worker does (mi_option_decommit_delay 0): the limit is checked on resident memory.
function(tessera_use_mimalloc name)
  if(mimalloc_FOUND)
    target_link_libraries(${name} PRIVATE mimalloc)
    target_compile_definitions(${name} PRIVATE TESSERA_WITH_MIMALLOC=1)
    target_link_options(${name} PRIVATE "LINKER:--no-as-needed")
  endif()
endfunction()

# tessera_program(<name> SRCS ... [INSTALL]): a command-line program or example.
function(tessera_program name)
  cmake_parse_arguments(ARG "INSTALL" "" "SRCS;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_link_libraries(${name} PRIVATE tessera::tessera ${ARG_LIBS})
  tessera_apply_flags(${name})
  if(ARG_INSTALL)
    install(TARGETS ${name} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endfunction()
