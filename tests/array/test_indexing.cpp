// Indexing and shape operations against NumPy: each result is written as .npy and one
// python run (Debian's NumPy) compares it with NumPy's own answer, exactly.
#include <gtest/gtest.h>

#include <tessera/array.hpp>

#include <sstream>

#include "array/numpy_check.hpp"
#include "test_support.hpp"

namespace ta = tessera::array;
using tessera::testing::error_of;
using tessera::testing::kCheckPrelude;
using tessera::testing::numpy_available;
using tessera::testing::run_python;
using tessera::testing::TempDir;

namespace {

ta::NDArray block_twice(const ta::NDArray& a) {
  return (ta::from_ndarray(a, -1) * 2).compute();
}
TESSERA_REGISTER(block_twice);

}  // namespace

TEST(BlockFunctions, MatchNumPy) {
  if (!numpy_available())
    GTEST_SKIP() << TESSERA_PYTHON " cannot import numpy (scripts/install-deps installs it)";
  TempDir dir;
  auto x = ta::from_ndarray(ta::arange(1, 61, 1, 1000).compute().reshape({6, 10}),
                            ta::Chunks{{2, 3, 1}, {4, 4, 2}});
  std::ostringstream checks;
  auto w = [&](const ta::Array& a, const std::string& name, const std::string& numpy) {
    ta::write_npy(a.compute(), (dir.path() / (name + ".npy")).string());
    checks << "check('" << name << "', " << numpy << ")\n";
  };
  w(x, "x", "x");
  w(ta::cumsum(x, 0), "cs0", "np.cumsum(x, 0)");
  w(ta::cumsum(x, 1), "cs1", "np.cumsum(x, 1)");
  w(ta::cumsum(x), "cs", "np.cumsum(x)");
  w(ta::cumsum(x.astype(ta::DType::Int32), -1), "csi", "np.cumsum(x.astype(np.int32), -1)");
  w(ta::cumsum(x > 30, 0), "csb", "np.cumsum(x > 30, 0)");
  w(ta::cumprod(x / 10, 1), "cp1", "np.cumprod(x / 10, 1), rtol=1e-12");
  w(ta::cumprod(x.astype(ta::DType::Int64), 0), "cp0", "np.cumprod(x.astype(np.int64), 0)");
  w(ta::map_blocks([](const ta::NDArray& b) { return b.astype(ta::DType::Float32); }, x,
                   {.dtype = ta::DType::Float32}),
    "mb1", "x.astype(np.float32)");
  w(ta::map_blocks(block_twice, x), "mb2", "x * 2");
  w(ta::map_blocks(
        [](const ta::NDArray& a, const ta::NDArray& b) {
          return (ta::from_ndarray(a, -1) - ta::from_ndarray(b, -1)).compute();
        },
        std::vector<ta::Array>{x, x[{0}].rechunk(5)}),
    "mb3", "x - x[0]");
  const std::string out =
      run_python(dir, kCheckPrelude + checks.str() + "print('ALL OK' if ok else 'MISMATCH')\n");
  EXPECT_NE(out.find("ALL OK"), std::string::npos) << out;
  // A registered function names the keys and can be shipped; a lambda is local.
  EXPECT_EQ(ta::map_blocks(block_twice, x).name().rfind("block_twice-", 0), 0u);
  EXPECT_EQ(ta::map_blocks(block_twice, x).name(), ta::map_blocks(block_twice, x).name());
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::map_blocks(block_twice, std::vector<ta::Array>{x, x});
            }),
            "map_blocks: 'block_twice' takes 1 arguments, 2 arrays were given");
}

TEST(Indexing, MatchesNumPy) {
  if (!numpy_available())
    GTEST_SKIP() << TESSERA_PYTHON " cannot import numpy (scripts/install-deps installs it)";
  TempDir dir;
  auto x = ta::from_ndarray(ta::arange(0, 360, 1, 1000).compute().reshape({6, 5, 12}),
                            ta::Chunks{{2, 3, 1}, {5}, {4, 4, 4}});
  std::ostringstream checks;
  auto w = [&](const ta::Array& a, const std::string& name, const std::string& numpy) {
    ta::write_npy(a.compute(), (dir.path() / (name + ".npy")).string());
    checks << "check('" << name << "', " << numpy << ")\n";
  };
  w(x, "x", "x");
  w(x[{1}], "i1", "x[1]");
  w(x[{ta::slice(1, 5), 2, ta::slice(-1, 0, -3)}], "i2", "x[1:5, 2, -1:0:-3]");
  w(x[{ta::slice({}, {}, -1)}], "i3", "x[::-1]");
  w(x[{-1, ta::slice(), ta::slice(3, 11, 2)}], "i4", "x[-1, :, 3:11:2]");
  w(x[{ta::slice(10, 20)}], "i5", "x[10:20]");
  w(x[{ta::slice(-100, 100, 4), ta::slice(4, 1, -1), -12}], "i6", "x[-100:100:4, 4:1:-1, -12]");
  w(ta::take(x, {5, 0, 0, 3, -1}, 2), "t1", "np.take(x, [5, 0, 0, 3, -1], 2)");
  w(ta::take(x, std::vector<int64_t>{}, 0), "t2", "np.take(x, [], 0)");
  w(ta::compress({true, false, true, true, false}, x, 1), "c1",
    "np.compress([1, 0, 1, 1, 0], x, 1)");
  w(x.reshape({30, 12}), "r1", "x.reshape(30, 12)");
  w(x.reshape({12, -1}), "r2", "x.reshape(12, -1)");
  w(x.ravel(), "r3", "x.ravel()");
  w(x.reshape({4, 9, 10}), "r4", "x.reshape(4, 9, 10)");
  w(x[{ta::slice(), 1}].T().reshape({3, 2, 2, 6}), "r5", "x[:, 1].T.reshape(3, 2, 2, 6)");
  w(ta::expand_dims(x, 1), "e1", "np.expand_dims(x, 1)");
  w(ta::expand_dims(x, -1), "e2", "np.expand_dims(x, -1)");
  w(ta::squeeze(x[{ta::slice(0, 1)}]), "s1", "np.squeeze(x[0:1])");
  w(ta::concatenate({x, x[{ta::slice(0, 2)}] * 2}, 0), "cc1", "np.concatenate([x, x[:2] * 2])");
  w(ta::concatenate({x, ta::ones({6, 5, 3}, 2, ta::DType::Int32)}, -1), "cc2",
    "np.concatenate([x, np.ones((6, 5, 3), dtype=np.int32)], -1)");
  w(ta::stack({x, x + 1}, 1), "st1", "np.stack([x, x + 1], 1)");
  w(ta::broadcast_to(x[{ta::slice(), ta::slice(0, 1)}], {2, 6, 5, 12}), "b1",
    "np.broadcast_to(x[:, 0:1], (2, 6, 5, 12))");
  w(x.transpose({1, 0, 2}), "tr", "x.transpose(1, 0, 2)");
  w(x.rechunk({4, 2, 5}), "rc1", "x");
  w(x.rechunk(ta::Chunks{{1, 1, 1, 1, 1, 1}, {2, 3}, {12}}) + 1, "rc2", "x + 1");
  // Integer-array indexing with lazy indices.
  const std::vector<int64_t> picks{5, 0, 0, 3, -1, 2, -6, 4};
  const auto lazy = ta::from_ndarray(ta::NDArray::from_vector(picks, {8}), ta::Chunks{{3, 1, 4}});
  w(x[lazy], "li1", "x[[5, 0, 0, 3, -1, 2, -6, 4]]");
  w(ta::take(x, lazy + 3, 2), "li2", "np.take(x, np.array([5, 0, 0, 3, -1, 2, -6, 4]) + 3, 2)");
  w(ta::take(x, ta::arange(4, -1, -1, 2).astype(ta::DType::Int32), 1), "li3",
    "np.take(x, np.arange(4, -1, -1, dtype=np.int32), 1)");
  w(ta::take(x, ta::from_ndarray(ta::NDArray::scalar(int64_t{-2}), ta::Chunks{}), 2), "li4",
    "np.take(x, -2, 2)");
  w(ta::take(x, ta::zeros({0}, 1, ta::DType::Int64), 0), "li5", "np.take(x, np.zeros(0, int), 0)");
  // Indices of unknown count: x[idx[idx > 2]].
  const auto some = lazy[lazy > 2];
  EXPECT_TRUE(x[some].has_unknown_chunks());
  w(x[some].compute_chunk_sizes(), "li6", "x[[5, 3, 4]]");
  w(x[some] + 1, "li7", "x[[5, 3, 4]] + 1");
  const std::string out = run_python(
      dir,
      "import numpy as np\n"
      "ok = True\n"
      "x = np.load('x.npy')\n"
      "def check(name, want):\n"
      "    global ok\n"
      "    got = np.load(name + '.npy')\n"
      "    if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, "
      "want):\n"
      "        ok = False\n"
      "        print(name, 'got', got.dtype, got.shape, 'want', want.dtype, want.shape)\n" +
          checks.str() + "print('ALL OK' if ok else 'MISMATCH')\n");
  EXPECT_NE(out.find("ALL OK"), std::string::npos) << out;
}

TEST(Indexing, BadIndicesAreNamed) {
  auto x = ta::ones({6, 5}, 2);
  EXPECT_EQ(error_of<tessera::IndexError>([&] { x[{6}]; }),
            "index 6 is out of bounds for axis 0 with size 6");
  EXPECT_EQ(error_of<tessera::IndexError>([&] {
              x[{0, -6}];
            }),
            "index -6 is out of bounds for axis 1 with size 5");
  EXPECT_EQ(error_of<tessera::IndexError>([&] {
              x[{0, 0, 0}];
            }),
            "too many indices for array: array is 2-dimensional, but 3 were indexed");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { x[{ta::slice(0, 4, 0)}]; }),
            "slice step cannot be zero (axis 0)");
  EXPECT_EQ(error_of<tessera::IndexError>([&] {
              ta::take(x, {0, 9}, 1);
            }),
            "index 9 is out of bounds for axis 1 with size 5");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::compress({true, false}, x, 0);
            }),
            "boolean index of length 2 does not match axis 0 of length 6 (shape (6, 5))");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              x.reshape({7, 4});
            }),
            "cannot reshape array of size 30 into shape (7, 4)");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { ta::squeeze(x, 0); }),
            "cannot select an axis to squeeze out which has size not equal to one (axis 0 of shape "
            "(6, 5))");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::concatenate({x, ta::ones({6, 4}, 2)}, 0);
            }),
            "all the input array dimensions except for the concatenation axis must match exactly: "
            "array 0 has shape "
            "(6, 5), array 1 has shape (6, 4) (axis 0)");
  EXPECT_EQ(
      error_of<tessera::ValueError>([&] {
        ta::stack({x, ta::ones({6, 4}, 2)});
      }),
      "all input arrays must have the same shape: array 0 has shape (6, 5), array 1 has (6, 4)");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::broadcast_to(x, {6, 6});
            }),
            "cannot broadcast shape (6, 5) to (6, 6)");
}

TEST(Indexing, BadLazyIndicesAreNamed) {
  auto x = ta::ones({6, 5}, 2);
  const auto idx = ta::from_ndarray(ta::NDArray::from_vector(std::vector<int64_t>{1, 6, 2}, {3}), 2);
  // Known only when computed: the computation fails naming the block, the index, the axis
  // and its size.
  const auto bad = x[idx];
  EXPECT_EQ(error_of<tessera::TaskError>([&] { bad.compute({.scheduler = "sync"}); }),
            "task '('" + bad.name() +
                "', 0, 0)' (op 'array.take_indexed') raised tessera::IndexError: index 6 is out of "
                "bounds for axis 0 with size 6");
  const auto low = ta::take(x, idx - 12, 1);
  EXPECT_EQ(error_of<tessera::TaskError>([&] { low.compute({.scheduler = "sync"}); }),
            "task '('" + low.name() +
                "', 0, 0)' (op 'array.take_indexed') raised tessera::IndexError: index -11 is out "
                "of bounds for axis 1 with size 5");
  EXPECT_EQ(error_of<tessera::TypeError>([&] { ta::take(x, ta::ones({2}, 1), 0); }),
            "take: indices must be integers, not float64");
  EXPECT_EQ(error_of<tessera::TypeError>([&] { ta::take(x, x > 0, 0); }),
            "take: indices must be integers, not bool (use compress for a mask)");
  EXPECT_EQ(error_of<tessera::IndexError>(
                [&] { ta::take(x, ta::zeros({2, 2}, 1, ta::DType::Int64), 0); }),
            "take: indices must be 0-D or 1-D, not of shape (2, 2) (an integer array indexes one "
            "axis)");
  EXPECT_EQ(error_of<tessera::IndexError>([&] { ta::take(x, idx, 2); }),
            "axis 2 is out of bounds for array of dimension 2");
  EXPECT_EQ(error_of<tessera::IndexError>(
                [&] { ta::from_ndarray(ta::NDArray::scalar(1.0), ta::Chunks{})[idx]; }),
            "too many indices for array: array is 0-dimensional");
}

TEST(Indexing, SlicesAreViewsOfOneBlockEach) {
  auto x = ta::ones({100, 100}, 10);
  auto y = x[{ta::slice(5, 25), 3}];
  EXPECT_EQ(y.chunks(), (ta::Chunks{{5, 10, 5}}));
  EXPECT_EQ(y.materialize().size(), 6u);  // 3 source blocks + 3 views
}

namespace {

// A 4-neighbour stencil: each element becomes the sum of its neighbours (edges of the
// extended block use what is there; map_overlap trims them away).
ta::NDArray neighbours(const ta::NDArray& b) {
  const ta::NDArray x = b.astype(ta::DType::Float64);
  const int64_t n = x.shape()[0], m = x.shape()[1];
  ta::NDArray out = ta::NDArray::zeros(ta::DType::Float64, {n, m});
  const double* p = x.data<double>();
  double* o = out.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) {
      o[i * m + j] = (i > 0 ? p[(i - 1) * m + j] : 0) + (i + 1 < n ? p[(i + 1) * m + j] : 0) +
                     (j > 0 ? p[i * m + j - 1] : 0) + (j + 1 < m ? p[i * m + j + 1] : 0);
    }
  }
  return out;
}
TESSERA_REGISTER(neighbours);

}  // namespace

TEST(Overlap, MatchesNumPyPad) {
  if (!numpy_available())
    GTEST_SKIP() << TESSERA_PYTHON " cannot import numpy (scripts/install-deps installs it)";
  TempDir dir;
  auto x = ta::from_ndarray(ta::random::integers(0, 100, {11, 9}, -1, 3).compute(),
                            ta::Chunks{{4, 4, 3}, {2, 5, 2}});
  std::ostringstream checks;
  auto w = [&](const ta::Array& a, const std::string& name, const std::string& numpy) {
    ta::write_npy(a.compute(), (dir.path() / (name + ".npy")).string());
    checks << "check('" << name << "', " << numpy << ")\n";
  };
  w(x, "x", "x");
  // Block (1, 1) of the overlapped array: rows 4..8 and columns 2..7 plus the margins.
  const std::vector<std::pair<ta::Boundary, std::string>> modes = {
      {ta::Boundary::Reflect, "symmetric"},
      {ta::Boundary::Periodic, "wrap"},
      {ta::Boundary::Nearest, "edge"},
      {ta::Boundary::Constant, "constant"}};
  for (const auto& [b, mode] : modes) {
    auto o = ta::overlap(x, {.depth = {2, 1}, .boundary = b, .constant = -7});
    const std::string pad = "np.pad(x, ((2, 2), (1, 1)), mode='" + mode + "'" +
                            (mode == "constant" ? ", constant_values=-7" : "") + ")";
    w(o[{ta::slice(0, 8), ta::slice(0, 4)}], "o00_" + mode, pad + "[0:8, 0:4]");
    w(o[{ta::slice(8, 16), ta::slice(4, 11)}], "o11_" + mode, pad + "[4:12, 2:9]");
    w(ta::map_overlap(neighbours, x,
                      {.depth = {1}, .boundary = b, .constant = -7, .dtype = ta::DType::Float64}),
      "st_" + mode,
      "(lambda p: p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])(np.pad(x, 1, mode='" +
          mode + "'" + (mode == "constant" ? ", constant_values=-7" : "") + ").astype(float))");
  }
  w(ta::map_overlap(neighbours, x, {.depth = {1}, .dtype = ta::DType::Float64}), "st_none",
    "(lambda p: p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])(np.pad(x, "
    "1).astype(float))");
  const std::string out =
      run_python(dir, kCheckPrelude + checks.str() + "print('ALL OK' if ok else 'MISMATCH')\n");
  EXPECT_NE(out.find("ALL OK"), std::string::npos) << out;
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::overlap(x, {.depth = {4, 1}});
            }),
            "overlap: depth 4 on axis 0 is larger than a block of 3 (chunks ((4, 4, 3), (2, 5, "
            "2))); rechunk first");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::overlap(x, {.depth = {1, 1, 1}});
            }),
            "overlap: 3 depths for an array of 2 dimensions");
}

TEST(UnknownChunks, BooleanMasksMatchNumPy) {
  if (!numpy_available())
    GTEST_SKIP() << TESSERA_PYTHON " cannot import numpy (scripts/install-deps installs it)";
  TempDir dir;
  auto x = ta::random::normal({13, 6}, {4, 4}, 21);
  std::ostringstream checks;
  auto w = [&](const ta::Array& a, const std::string& name, const std::string& numpy) {
    ta::write_npy(a.compute(), (dir.path() / (name + ".npy")).string());
    checks << "check('" << name << "', " << numpy << ")\n";
  };
  w(x, "x", "x");
  auto picked = x[x > 0.5];
  EXPECT_TRUE(picked.has_unknown_chunks());
  EXPECT_EQ(picked.shape(), (ta::Shape{-1}));
  EXPECT_EQ(ta::repr(picked),
            "tessera.array<getitem, shape=(nan,), dtype=float64, chunksize=(nan,)>");
  w(picked, "m1", "x[x > 0.5]");
  w(x[x[{ta::slice(), 0}] < 0], "m2", "x[x[:, 0] < 0]");
  w(ta::compress(x[{0}] > 0, x, 1), "m3", "np.compress(x[0] > 0, x, 1)");
  w((picked * 2 + 1).sum(), "m4", "(x[x > 0.5] * 2 + 1).sum(), rtol=1e-12");
  w(picked.mean(), "m5", "x[x > 0.5].mean(), rtol=1e-12");
  const ta::Array known = picked.compute_chunk_sizes();
  EXPECT_FALSE(known.has_unknown_chunks());
  EXPECT_EQ(known.name(), picked.name());
  w(known[{ta::slice(1, 4)}], "m6", "x[x > 0.5][1:4]");
  const std::string out =
      run_python(dir, kCheckPrelude + checks.str() + "print('ALL OK' if ok else 'MISMATCH')\n");
  EXPECT_NE(out.find("ALL OK"), std::string::npos) << out;
  EXPECT_EQ(error_of<tessera::ValueError>([&] { picked[{ta::slice(0, 2)}]; }),
            "indexing: the array's chunk sizes are unknown (after boolean-mask indexing); call "
            "compute_chunk_sizes() first");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { picked.rechunk(5); }),
            "rechunk: the array's chunk sizes are unknown (after boolean-mask indexing); call "
            "compute_chunk_sizes() first");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { picked + ta::ones({5}, 5); }),
            "operands could not be broadcast together with shapes (-1,) (5,) (add)");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { picked.argmax(); }),
            "argmax: the array's chunk sizes are unknown (after boolean-mask indexing); call "
            "compute_chunk_sizes() first");
  EXPECT_EQ(error_of<tessera::IndexError>([&] { x[ta::ones({5}, 5, ta::DType::Bool)]; }),
            "boolean index did not match indexed array along dimension 0; dimension is 13 but "
            "corresponding boolean "
            "dimension is 5");
  EXPECT_EQ(error_of<tessera::IndexError>([&] {
              x[ta::ones({6, 13}, 5, ta::DType::Bool)];
            }),
            "boolean index of shape (6, 13) does not match the array's shape (13, 6) (or its first "
            "axis)");
  EXPECT_EQ(error_of<tessera::TypeError>([&] { ta::compress(ta::ones({6}, 5), x, 1); }),
            "compress: the condition must be bool, not float64");
}

namespace {

// Sum over a list of blocks of a_i @ b_i: what blockwise hands a contracted letter.
ta::NDArray sum_of_products(const std::vector<tessera::Value>& as,
                            const std::vector<tessera::Value>& bs) {
  ta::Array total =
      ta::zeros({as[0].get<ta::NDArray>().shape()[0], bs[0].get<ta::NDArray>().shape()[1]}, -1);
  for (size_t i = 0; i < as.size(); ++i) {
    total = total + ta::matmul(ta::from_ndarray(as[i].get<ta::NDArray>(), -1),
                               ta::from_ndarray(bs[i].get<ta::NDArray>(), -1));
  }
  return total.compute({.scheduler = "sync"});
}
TESSERA_REGISTER(sum_of_products);

}  // namespace

TEST(Blockwise, MatchesNumPy) {
  if (!numpy_available())
    GTEST_SKIP() << TESSERA_PYTHON " cannot import numpy (scripts/install-deps installs it)";
  TempDir dir;
  auto x = ta::random::normal({9, 7}, {4, 3}, 31);
  auto v = ta::random::normal({7}, 3, 32);
  auto b = ta::random::normal({7, 5}, {2, 5}, 33);
  std::ostringstream checks;
  auto w = [&](const ta::Array& a, const std::string& name, const std::string& numpy) {
    ta::write_npy(a.compute(), (dir.path() / (name + ".npy")).string());
    checks << "check('" << name << "', " << numpy << ")\n";
  };
  w(x, "x", "x");
  w(v, "v", "np.load('v.npy')");
  w(b, "b", "np.load('b.npy')");
  auto add = [](const ta::NDArray& p, const ta::NDArray& q) {
    return (ta::from_ndarray(p, -1) + ta::from_ndarray(q, -1)).compute({.scheduler = "sync"});
  };
  w(ta::blockwise(add, "ij", {{x, "ij"}, {v, "j"}}), "add", "x + np.load('v.npy')");
  auto outer = [](const ta::NDArray& p, const ta::NDArray& q) {
    return (ta::from_ndarray(p, -1).reshape({-1, 1}) * ta::from_ndarray(q, -1))
        .compute({.scheduler = "sync"});
  };
  w(ta::blockwise(outer, "ij", {{x[{ta::slice(), 0}], "i"}, {v, "j"}}), "outer",
    "np.outer(x[:, 0], np.load('v.npy'))");
  w(ta::blockwise(sum_of_products, "ik", {{x, "ij"}, {b, "jk"}}), "matmul",
    "x @ np.load('b.npy'), rtol=1e-12");
  // concatenate=true: the blocks along 'j' arrive joined, so one product per output block.
  auto product = [](const ta::NDArray& p, const ta::NDArray& q) {
    EXPECT_EQ(p.shape()[1], 7);  // the whole contracted axis
    return ta::matmul(ta::from_ndarray(p, -1), ta::from_ndarray(q, -1)).compute({.scheduler = "sync"});
  };
  const auto joined = ta::blockwise(product, "ik", {{x, "ij"}, {b, "jk"}}, {.concatenate = true});
  EXPECT_EQ(joined.chunks(), (ta::Chunks{{4, 4, 1}, {5}}));
  w(joined, "matmul_c", "x @ np.load('b.npy'), rtol=1e-12");
  // Every axis contracted: one call on the whole array, a 0-d result.
  auto total = [](const ta::NDArray& p) {
    EXPECT_EQ(p.shape(), (ta::Shape{9, 7}));
    return ta::from_ndarray(p, -1).sum().compute({.scheduler = "sync"});
  };
  w(ta::blockwise(total, "", {{x, "ij"}}, {.concatenate = true}), "sum_c", "np.sum(x), rtol=1e-12");
  // new_axes: each block gains an axis of length 3.
  auto spread = [](const ta::NDArray& p) {
    return (ta::from_ndarray(p, -1).reshape({p.shape()[0], p.shape()[1], 1}) *
            ta::arange(1, 4, 1, 3))
        .compute({.scheduler = "sync"});
  };
  const auto spreaded = ta::blockwise(spread, "ijk", {{x, "ij"}}, {.new_axes = {{'k', 3}}});
  EXPECT_EQ(spreaded.shape(), (ta::Shape{9, 7, 3}));
  EXPECT_EQ(spreaded.chunks()[2], (std::vector<int64_t>{3}));
  w(spreaded, "new_axes", "x[:, :, None] * np.arange(1, 4)");
  // Both: contract 'j' joined, and a new axis 'l' in its place.
  auto rows_times = [](const ta::NDArray& p) {
    return (ta::from_ndarray(p, -1).sum(1, {.keepdims = true}) * ta::arange(0, 2, 1, 2))
        .compute({.scheduler = "sync"});
  };
  w(ta::blockwise(rows_times, "il", {{x, "ij"}}, {.concatenate = true, .new_axes = {{'l', 2}}}),
    "both", "x.sum(1, keepdims=True) * np.arange(2), rtol=1e-12");
  const std::string out =
      run_python(dir, kCheckPrelude + checks.str() + "print('ALL OK' if ok else 'MISMATCH')\n");
  EXPECT_NE(out.find("ALL OK"), std::string::npos) << out;
  EXPECT_EQ(ta::blockwise(sum_of_products, "ik", {{x, "ij"}, {b, "jk"}})
                .name()
                .rfind("sum_of_products-", 0),
            0u);
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::blockwise(add, "ik", {{x, "ij"}, {v, "j"}});
            }),
            "blockwise: output letter 'k' is in no input index");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::blockwise(add, "ij", {{x, "i"}, {v, "j"}});
            }),
            "blockwise: index 'i' has 1 letters for an array of shape (9, 7)");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::blockwise(add, "ij", {{x, "ij"}, {b, "ij"}});
            }),
            "blockwise: letter 'i' has length 9 in one input and 7 in another");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::blockwise(outer, "ij", {{x[{ta::slice(), 0}], "i"}, {v, "j"}},
                            {.new_axes = {{'j', 2}}});
            }),
            "blockwise: new axis 'j' is also in an input index");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::blockwise(add, "ij", {{x, "ij"}, {v, "j"}}, {.new_axes = {{'k', 2}}});
            }),
            "blockwise: new axis 'k' is not in the output index 'ij'");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::blockwise(add, "ijk", {{x, "ij"}, {v, "j"}}, {.new_axes = {{'k', -1}}});
            }),
            "blockwise: new axis 'k' has negative length -1");
}
