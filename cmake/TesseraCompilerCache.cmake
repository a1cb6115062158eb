# Use ccache when present. CCACHE_BASEDIR makes paths relative to the source tree, so a fresh
# clone in another folder hits the same cache entries; CCACHE_NOHASHDIR keeps the build
# directory out of the hash for debug-info builds.
find_program(TESSERA_CCACHE ccache)
if(TESSERA_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${CMAKE_SOURCE_DIR} CCACHE_NOHASHDIR=true
      CCACHE_SLOPPINESS=pch_defines,time_macros ${TESSERA_CCACHE})
endif()
