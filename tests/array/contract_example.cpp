// The array issue's example, kept verbatim inside main (clang-format off keeps it so); the
// lines before it only create the w.npy the example opens.
#include <tessera/array.hpp>

#include <cstdio>
#include <iostream>

namespace ta = tessera::array;

int main(int argc, char** argv) {
  tessera::init(argc, argv);
  ta::write_npy(ta::NDArray::full(ta::DType::Float64, {1000, 1000}, 2.0), "w.npy");
  // clang-format off
    auto y = ta::ones({15}, {5});
    std::cout << y;        // tessera.array<ones, shape=(15,), dtype=float64, chunksize=(5,)>
    auto s = y.sum();      // lazy 0-d array
    double v = s.compute().item<double>();                 // 15
    auto X = ta::random::uniform({10, 10}, {3, 3}, /*seed=*/42);
    auto Z = ta::matmul(X.T(), X) + X.T();
    ta::NDArray z = Z.compute();                           // in-memory result
    ta::to_npy(Z, "z.npy");                                // NumPy loads it
    auto W = ta::from_npy("w.npy", {1000, 1000});          // chunked view of a file
    Z.visualize("z.svg");
  // clang-format on
  std::cout << "\n";
  bool ok = v == 15 && z.shape() == ta::Shape{10, 10} && W.shape() == ta::Shape{1000, 1000} &&
            ta::read_npy("z.npy") == z && W.sum().compute().item<double>() == 2e6;
  std::FILE* svg = std::fopen("z.svg", "r");
  ok = ok && svg != nullptr;
  if (svg) std::fclose(svg);
  std::cout << (ok ? "ok" : "FAILED") << "\n";
  return ok ? 0 : 1;
}
