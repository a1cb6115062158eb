#include <tessera/tessera.hpp>

int64_t square(int64_t x) {
  return x * x;
}
TESSERA_REGISTER(square);

int main(int argc, char** argv) {
  tessera::init(argc, argv);
  std::vector<tessera::Delayed<int64_t>> parts;
  for (int64_t i = 1; i <= 10; ++i) parts.push_back(tessera::delayed(square)(i));
  int64_t total = 0;
  for (int64_t v : tessera::compute(parts)) total += v;
  return total == 385 ? 0 : 1;
}
