// Checking array results against NumPy: results are written as .npy files, and one run of
// Debian's python3 with NumPy compares each with NumPy's own answer.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "test_support.hpp"

namespace tessera::testing {

inline bool numpy_available() {
  return std::system(TESSERA_PYTHON " -c 'import numpy' >/dev/null 2>&1") == 0;
}

// Runs `script` with /usr/bin/python3 in `dir`; returns its stdout.
inline std::string run_python(const TempDir& dir, const std::string& script) {
  const std::string path = (dir.path() / "check.py").string();
  std::ofstream(path) << script;
  const std::string cmd = "cd '" + dir.path().string() + "' && " TESSERA_PYTHON " check.py 2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

inline const char* kCheckPrelude =
    "import numpy as np\n"
    "ok = True\n"
    "x = np.load('x.npy')\n"
    "def check(name, want, rtol=0):\n"
    "    global ok\n"
    "    got = np.load(name + '.npy')\n"
    "    same = np.array_equal(got, want) if rtol == 0 else np.allclose(got, want, rtol=rtol, "
    "atol=0)\n"
    "    if got.shape != want.shape or got.dtype != want.dtype or not same:\n"
    "        ok = False\n"
    "        print(name, 'got', got.dtype, got.shape, 'want', want.dtype, want.shape)\n";

}  // namespace tessera::testing
