// Arrays: construction, reprs, graphs, fusion and the errors of bad input. Values here are
// checked against hand-computed results; tests/array/test_oracle.cpp checks against NumPy.
#include <gtest/gtest.h>

#include <tessera/array.hpp>

#include <cmath>
#include <sstream>

#include "test_support.hpp"

namespace ta = tessera::array;
using tessera::testing::error_of;
using tessera::testing::TempDir;

TEST(Array, ReprNamesOpShapeDtypeAndChunks) {
  EXPECT_EQ(ta::repr(ta::ones({15}, {5})),
            "tessera.array<ones, shape=(15,), dtype=float64, chunksize=(5,)>");
  EXPECT_EQ(ta::repr(ta::zeros({4, 6}, {2, 3}, ta::DType::Int32)),
            "tessera.array<zeros, shape=(4, 6), dtype=int32, chunksize=(2, 3)>");
  EXPECT_EQ(ta::repr(ta::ones({15}, {5}).sum()),
            "tessera.array<sum, shape=(), dtype=float64, chunksize=()>");
}

TEST(Array, ChunkSpecs) {
  EXPECT_EQ(ta::ones({10}, 4).chunks(), (ta::Chunks{{4, 4, 2}}));
  EXPECT_EQ(ta::ones({10, 3}, {-1, 2}).chunks(), (ta::Chunks{{10}, {2, 1}}));
  EXPECT_EQ(ta::ones({5}, ta::Chunks{{2, 3}}).chunks(), (ta::Chunks{{2, 3}}));
  EXPECT_EQ(ta::ones({0, 3}, 2).chunks(), (ta::Chunks{{0}, {2, 1}}));
  const int64_t old = ta::set_chunk_size_limit(8 * 100);
  EXPECT_EQ(ta::ones({1000}).chunks()[0][0], 100);
  EXPECT_EQ(ta::ones({100, 100}).chunksize(), (ta::Shape{10, 10}));
  ta::set_chunk_size_limit(old);
  EXPECT_EQ(ta::ones({100, 100}).numblocks(), (ta::Shape{1, 1}));
}

TEST(Array, BadChunksAndShapesAreNamed) {
  EXPECT_EQ(error_of<tessera::ValueError>([] {
              ta::ones({5}, ta::Chunks{{2, 2}});
            }),
            "chunks ((2, 2),) do not add up to shape (5,) along axis 0");
  EXPECT_EQ(error_of<tessera::ValueError>([] {
              ta::ones({5, 5}, {2});
            }),
            "chunks (2,) have 1 axes, the shape (5, 5) has 2");
  EXPECT_EQ(error_of<tessera::ValueError>([] { ta::ones({5}, 0); }),
            "chunks=0 for shape (5,): a block size must be positive (or -1)");
  EXPECT_EQ(error_of<tessera::ValueError>([] { ta::ones({-1}, 2); }),
            "negative dimensions are not allowed: shape (-1,)");
  EXPECT_EQ(error_of<tessera::ValueError>([] { ta::ones({5}, "big"); }),
            "chunks='big': expected \"auto\", a block size, a block shape or explicit block sizes");
  EXPECT_EQ(error_of<tessera::ValueError>([] {
              ta::ones({3, 4}, 2) + ta::ones({3, 5}, 2);
            }),
            "operands could not be broadcast together with shapes (3, 4) (3, 5) (add)");
  EXPECT_EQ(error_of<tessera::ValueError>([] {
              ta::matmul(ta::ones({3, 4}, 2), ta::ones({5, 2}, 2));
            }),
            "matmul: mismatch in its core dimension: shapes (3, 4) and (5, 2) (4 != 5)");
  EXPECT_EQ(error_of<tessera::AxisError>([] {
              ta::ones({3, 4}, 2).sum(2);
            }),
            "axis 2 is out of bounds for array of dimension 2");
  EXPECT_EQ(error_of<tessera::AxisError>([] {
              ta::ones({3, 4}, 2).argmax(-3);
            }),
            "axis -3 is out of bounds for array of dimension 2");
  EXPECT_EQ(error_of<tessera::ValueError>([] {
              ta::ones({3, 4}, 2).sum({0, 0});
            }),
            "duplicate value in axis (0, 0)");
  EXPECT_EQ(error_of<tessera::ValueError>([] { ta::ones({0}, 2).max(); }),
            "zero-size array to reduction operation max which has no identity (axis 0 of shape "
            "(0,) is empty)");
  EXPECT_EQ(error_of<tessera::TypeError>(
                [] { ta::ones({3}, 2, ta::DType::Bool) - ta::ones({3}, 2, ta::DType::Bool); }),
            "numpy boolean subtract, the `-` operator, is not supported, use the bitwise_xor, the "
            "`^` operator, "
            "or the logical_xor function instead");
  EXPECT_EQ(error_of<tessera::ValueError>([] { ta::ones({3}, 2).sum({}, {.split_every = 1}); }),
            "sum: split_every must be at least 2 (or 0 for the default), not 1");
}

TEST(Array, NothingIsComputedBeforeTheCheck) {
  // Building an expression on a million blocks is cheap: layers, not tasks.
  auto x = ta::ones({1000000, 1000}, {1000, 1});
  auto y = (x + 1) * 2;
  EXPECT_EQ(y.npartitions(), 1000000000 / 1000);
  EXPECT_EQ(y.graph().layers().size(), 2u);  // ones and one fused elementwise layer
  // Computing one block materializes only what it needs.
  tessera::Graph g =
      y.graph().materialize(std::vector<tessera::Key>{y.block_key(std::vector<int64_t>{7, 3})});
  EXPECT_EQ(g.size(), 2u);
}

TEST(Array, ElementwiseChainsFuseIntoOneTaskPerBlock) {
  auto x = ta::random::uniform({100, 100}, {50, 50}, 1);
  auto y = ta::exp(x * 2 + 1) - x / 3;
  EXPECT_EQ(y.graph().layers().size(), 2u);
  EXPECT_EQ(y.materialize().size(), 8u);  // 4 random blocks + 4 fused blocks
  const ta::NDArray xs = x.compute(), ys = y.compute();
  for (int64_t i : {0, 57, 9999}) {
    const double v = xs.data<double>()[i];
    EXPECT_DOUBLE_EQ(ys.data<double>()[i], std::exp(v * 2 + 1) - v / 3);
  }
}

TEST(Array, SeedExampleValues) {
  auto y = ta::ones({15}, {5});
  EXPECT_EQ(y.sum().compute().item<double>(), 15.0);
  auto X = ta::random::uniform({10, 10}, {3, 3}, 42);
  const ta::NDArray x = X.compute();
  const ta::NDArray z = (ta::matmul(X.T(), X) + X.T()).compute();
  for (int i = 0; i < 10; ++i) {
    for (int j = 0; j < 10; ++j) {
      double e = x.at<double>({j, i});
      for (int k = 0; k < 10; ++k) e += x.at<double>({k, i}) * x.at<double>({k, j});
      EXPECT_NEAR(z.at<double>({i, j}), e, 1e-12);
    }
  }
}

TEST(Array, RandomDependsOnSeedAndChunksOnly) {
  auto a = ta::random::normal({200, 30}, {64, 7}, 5);
  const ta::NDArray s = a.compute({.scheduler = "sync"});
  EXPECT_EQ(a.compute({.scheduler = "threads", .num_workers = 2}), s);
  EXPECT_EQ(a.compute({.scheduler = "threads", .num_workers = 1}), s);
  EXPECT_NE(ta::random::normal({200, 30}, {64, 7}, 6).compute(), s);
  auto i = ta::random::integers(-3, 4, {1000}, 100, 9).compute();
  EXPECT_EQ(i.dtype(), ta::DType::Int64);
  for (int64_t v : i.to_vector<int64_t>()) {
    EXPECT_GE(v, -3);
    EXPECT_LT(v, 4);
  }
  const double m = ta::random::normal({100000}, 10000, 1, 2.0, 3.0).mean().compute().item<double>();
  EXPECT_NEAR(m, 2.0, 0.05);
  const double sd = ta::random::normal({100000}, 10000, 1, 2.0, 3.0).std().compute().item<double>();
  EXPECT_NEAR(sd, 3.0, 0.05);
}

TEST(Array, PersistKeepsKeysAndValues) {
  auto x = ta::arange(0, 10, 1, 3);
  auto p = x.persist();
  EXPECT_EQ(p.name(), x.name());
  EXPECT_EQ(p.graph().layers()[0]->kind(), "materialized");
  EXPECT_EQ(p.compute(), x.compute());
  EXPECT_EQ((p * 2).sum().compute().item<double>(), 90.0);
}

TEST(Array, KeysAreDeterministic) {
  EXPECT_EQ(ta::ones({10}, 5).name(), ta::ones({10}, 5).name());
  EXPECT_NE(ta::ones({10}, 5).name(), ta::ones({10}, 2).name());
  EXPECT_EQ((ta::ones({10}, 5) + 1).name(), (ta::ones({10}, 5) + 1).name());
  EXPECT_EQ(ta::ones({10}, 5).name().rfind("ones-", 0), 0u);
}

TEST(NDArray, ViewsAccessAndErrors) {
  auto a = ta::NDArray::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(a.at<double>({1, 2}), 6);
  EXPECT_EQ(a.at<int>({-1, -3}), 4);
  auto t = a.transpose();
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.contiguous().to_vector<double>(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(a.slice(1, 1, 3).contiguous().to_vector<int64_t>(), (std::vector<int64_t>{2, 3, 5, 6}));
  EXPECT_EQ(a.repr(), "array([[1., 2., 3.],\n       [4., 5., 6.]])");
  EXPECT_EQ(error_of<tessera::IndexError>([&] {
              a.at<double>({2, 0});
            }),
            "index 2 is out of bounds for axis 0 with size 2 (shape (2, 3))");
  EXPECT_EQ(error_of<tessera::TypeError>([&] { a.data<float>(); }),
            "array holds float64, not float32");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { t.data<double>(); }),
            "array of shape (3, 2) is a strided view: call contiguous() first");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { a.item<double>(); }),
            "item(): the array has 6 elements (shape (2, 3)), not 1");
  EXPECT_EQ(error_of<tessera::ValueError>([] {
              ta::NDArray::from_vector(std::vector<int32_t>{1, 2}, {3});
            }),
            "cannot make an array of shape (3,) (3 elements) from 2 values");
  EXPECT_EQ(ta::NDArray::full(ta::DType::Int32, {2}, 7.9).to_vector<int>(),
            (std::vector<int>{7, 7}));
}

TEST(NDArray, CodecRoundTripsEveryDtype) {
  for (auto t : {ta::DType::Bool, ta::DType::Int32, ta::DType::Int64, ta::DType::Float32,
                 ta::DType::Float64}) {
    ta::NDArray a = ta::random::integers(0, 2, {3, 4}, 2, 1).compute().astype(t);
    tessera::Value v = tessera::Value::of(a);
    tessera::Encoder e;
    e.write_value(v);
    auto header = e.finish_header();
    tessera::Decoder d(header, e.frames());
    EXPECT_EQ(d.read_value().get<ta::NDArray>(), a) << ta::dtype_name(t);
    // Strided views are sent as their elements.
    tessera::Encoder e2;
    e2.write_value(tessera::Value::of(a.transpose()));
    auto h2 = e2.finish_header();
    tessera::Decoder d2(h2, e2.frames());
    EXPECT_EQ(d2.read_value().get<ta::NDArray>(), a.transpose().contiguous());
  }
}

TEST(Npy, RoundTripAndChunkedReads) {
  TempDir dir;
  const std::string path = (dir.path() / "a.npy").string();
  auto x = ta::random::normal({37, 21}, {10, 8}, 3);
  ta::to_npy(x, path);
  const ta::NDArray whole = ta::read_npy(path);
  EXPECT_EQ(whole, x.compute());
  EXPECT_EQ(ta::from_npy(path, {6, 5}).compute(), whole);
  EXPECT_EQ(ta::from_npy(path, {6, 5}).sum(0).compute().shape(), (ta::Shape{21}));
  for (auto t : {ta::DType::Bool, ta::DType::Int32, ta::DType::Int64, ta::DType::Float32}) {
    ta::write_npy(whole.astype(t), path);
    EXPECT_EQ(ta::read_npy(path), whole.astype(t));
  }
}

TEST(Npy, BadFilesNameThePath) {
  TempDir dir;
  const std::string path = (dir.path() / "bad.npy").string();
  EXPECT_EQ(error_of<tessera::IOError>([&] { ta::read_npy(path); }),
            path + ": cannot open: No such file or directory");
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fputs("hello, this is not numpy", f);
    std::fclose(f);
  }
  EXPECT_EQ(error_of<tessera::IOError>([&] { ta::from_npy(path); }),
            path + ": not a .npy file (bad magic)");
  ta::write_npy(ta::NDArray::zeros(ta::DType::Float64, {100}), path);
  std::filesystem::resize_file(path, 300);
  EXPECT_EQ(error_of<tessera::IOError>([&] { ta::read_npy(path); }),
            path + ": file is truncated: shape (100,) needs 800 bytes of data, it has 172");
}

TEST(Array, ReadmeTour) {
  // The README's arrays example (with a smaller out-of-core array), values checked.
  TempDir dir;
  auto y = ta::ones({15}, {5});
  std::ostringstream os;
  os << y;
  EXPECT_EQ(os.str(), "tessera.array<ones, shape=(15,), dtype=float64, chunksize=(5,)>");
  double v = y.sum().compute().item<double>();
  EXPECT_EQ(v, 15);
  auto X = ta::random::uniform({10, 10}, {3, 3}, /*seed=*/42);
  ta::NDArray z = (ta::matmul(X.T(), X) + X.T()).compute();
  EXPECT_EQ(z.shape(), (ta::Shape{10, 10}));
  auto m = X.mean(0, {.keepdims = true});
  EXPECT_EQ(m.shape(), (ta::Shape{1, 10}));
  auto w = ta::where(X > 0.5, ta::exp(X), X * 2)[{ta::slice(0, 5), 3}];
  const ta::NDArray xs = X.compute(), ws = w.compute();
  for (int i = 0; i < 5; ++i) {
    const double e = xs.at<double>({i, 3});
    EXPECT_DOUBLE_EQ(ws.at<double>({i}), e > 0.5 ? std::exp(e) : e * 2);
  }
  auto [q, r] = ta::linalg::qr(ta::random::normal({1000, 20}, {100, 20}));
  EXPECT_EQ(q.shape(), (ta::Shape{1000, 20}));
  EXPECT_EQ(r.shape(), (ta::Shape{20, 20}));
  ta::to_npy(X, (dir.path() / "x.npy").string());
  EXPECT_EQ(ta::read_npy((dir.path() / "x.npy").string()), xs);
  auto big = ta::random::random({1000, 100}, {100, 10});
  const double total = big.sum().compute().item<double>();
  EXPECT_NEAR(total, 50000, 500);
}
