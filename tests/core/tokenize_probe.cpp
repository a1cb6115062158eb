// Prints tokens of fixed inputs, one per line: run in separate processes, they must agree.
#include <iostream>

#include "tessera/core.hpp"

namespace probe {
int64_t inc(int64_t x) {
  return x + 1;
}
}  // namespace probe
TESSERA_REGISTER(probe::inc);

int main() {
  using namespace tessera;
  std::cout << tokenize(Value::of(int64_t{1})) << "\n"
            << tokenize(Value::of(std::vector<double>{1, 2, 3})) << "\n"
            << tokenize(Value::of("hello")) << "\n"
            << key_for(get_op("probe::inc"), std::vector<Arg>{Arg(Value::of(int64_t{1}))}) << "\n"
            << tokenize(Task::call("probe::inc", {Arg::ref(Key("x", {0, 1}))})) << "\n";
  return 0;
}
