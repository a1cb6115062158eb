// The first program in README.md: delayed calls, computing, pictures, progress.
#include <tessera/tessera.hpp>

#include <iostream>

int64_t inc(int64_t x) {
  return x + 1;
}
int64_t add(int64_t x, int64_t y) {
  return x + y;
}
TESSERA_REGISTER(inc);
TESSERA_REGISTER(add);

int main(int argc, char** argv) {
  tessera::init(argc, argv);
  auto a = tessera::delayed(inc)(1);
  auto b = tessera::delayed(add)(a, 10);
  int64_t r = b.compute();  // threads, the default
  int64_t s = b.compute({.scheduler = "sync"});
  auto [x, y] = tessera::compute(a, b);  // the shared task `a` runs once
  b.visualize("b.svg");                  // graphviz picture
  {
    tessera::ProgressBar progress;
    b.compute();
  }                         // a progress bar while in scope
  std::string k = b.key();  // deterministic key

  std::cout << "b = " << r << " (threads), " << s << " (sync); compute(a, b) = (" << x << ", " << y
            << ")\n"
            << "key of b: " << k << "\nwrote b.svg\n";
  return (r == 12 && s == 12 && x == 2 && y == 12) ? 0 : 1;
}
