// Zarr v2 and HDF5 stores, both ways with python zarr and h5py (Debian's packages), and
// store() into a custom sink.
#include <gtest/gtest.h>

#include <tessera/array.hpp>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "array/numpy_check.hpp"
#include "test_support.hpp"

namespace ta = tessera::array;
using tessera::testing::error_of;
using tessera::testing::run_python;
using tessera::testing::TempDir;

namespace {

bool python_has(const char* module) {
  return std::system(
             (std::string(TESSERA_PYTHON " -c 'import ") + module + "' >/dev/null 2>&1").c_str()) ==
         0;
}

}  // namespace

TEST(Zarr, PythonWritesTesseraReads) {
  if (!python_has("zarr"))
    GTEST_SKIP() << "python3-zarr is not installed (scripts/install-deps installs it)";
  TempDir dir;
  const std::string out = run_python(dir, R"(import numpy as np, zarr, numcodecs
rng = np.random.default_rng(0)
a = rng.normal(size=(23, 17))
np.save('a.npy', a)
for name, comp in [('zlib', numcodecs.Zlib(level=3)), ('zstd', numcodecs.Zstd(level=2)),
                   ('blosc', numcodecs.Blosc(cname='lz4', clevel=5, shuffle=1)), ('none', None)]:
    z = zarr.open(name + '.zarr', mode='w', shape=a.shape, chunks=(5, 6), dtype='f8', compressor=comp)
    z[:] = a
i = zarr.open('ints.zarr', mode='w', shape=(10,), chunks=(3,), dtype='i4', fill_value=-1)
i[:4] = np.arange(4)   # chunks 2 and 3 are never written: they read as the fill value
b = zarr.open('bools.zarr', mode='w', shape=(7, 3), chunks=(2, 2), dtype=bool)
b[:] = (np.arange(21).reshape(7, 3) % 3) == 0
n = zarr.open('nested.zarr', mode='w', shape=(6, 4), chunks=(4, 3), dtype='f4', dimension_separator='/')
n[:] = np.arange(24, dtype='f4').reshape(6, 4)
print('written')
)");
  ASSERT_NE(out.find("written"), std::string::npos) << out;
  auto p = [&](const std::string& n) { return (dir.path() / n).string(); };
  const ta::NDArray a = ta::read_npy(p("a.npy"));
  for (const char* name : {"zlib", "zstd", "blosc", "none"}) {
    auto z = ta::from_zarr(p(std::string(name) + ".zarr"));
    EXPECT_EQ(z.chunks(), (ta::Chunks{{5, 5, 5, 5, 3}, {6, 6, 5}})) << name;
    EXPECT_EQ(z.compute(), a) << name;
    EXPECT_EQ(ta::from_zarr(p(std::string(name) + ".zarr"), {10, 10}).compute(), a) << name;
  }
  EXPECT_EQ(ta::from_zarr(p("ints.zarr")).compute().to_vector<int>(),
            (std::vector<int>{0, 1, 2, 3, -1, -1, -1, -1, -1, -1}));
  const ta::NDArray b = ta::from_zarr(p("bools.zarr")).compute();
  EXPECT_EQ(b.dtype(), ta::DType::Bool);
  EXPECT_EQ(ta::count_nonzero(ta::from_zarr(p("bools.zarr"))).compute().item<int64_t>(), 7);
  const ta::NDArray n = ta::from_zarr(p("nested.zarr")).compute();
  EXPECT_EQ(n.dtype(), ta::DType::Float32);
  EXPECT_EQ(n.at<float>({5, 3}), 23.0f);
}

TEST(Zarr, TesseraWritesPythonReads) {
  if (!python_has("zarr"))
    GTEST_SKIP() << "python3-zarr is not installed (scripts/install-deps installs it)";
  TempDir dir;
  auto p = [&](const std::string& n) { return (dir.path() / n).string(); };
  auto x = ta::random::normal({23, 17}, {5, 6}, 4);
  ta::write_npy(x.compute(), p("x.npy"));
  ta::to_zarr(x, p("zlib.zarr"));
  ta::to_zarr(x, p("zstd.zarr"), {.compressor = "zstd", .level = 3});
  ta::to_zarr(x, p("blosc.zarr"),
              {.compressor = "blosc", .blosc_cname = "zstd", .blosc_shuffle = 2});
  ta::to_zarr(x.astype(ta::DType::Int32), p("ints.zarr"),
              {.compressor = "none", .dimension_separator = "/"});
  ta::to_zarr(x > 0, p("bools.zarr"));
  const std::string out = run_python(dir, R"(import numpy as np, zarr
x = np.load('x.npy')
ok = True
for name in ['zlib', 'zstd', 'blosc']:
    z = zarr.open(name + '.zarr', mode='r')
    ok &= z.chunks == (5, 6) and z.dtype == np.float64 and np.array_equal(z[:], x)
ok &= np.array_equal(zarr.open('ints.zarr', mode='r')[:], x.astype(np.int32))
ok &= np.array_equal(zarr.open('bools.zarr', mode='r')[:], x > 0)
print('ALL OK' if ok else 'MISMATCH')
)");
  EXPECT_NE(out.find("ALL OK"), std::string::npos) << out;
}

TEST(Zarr, BadStoresAreNamed) {
  TempDir dir;
  const std::string path = (dir.path() / "nothing.zarr").string();
  EXPECT_EQ(error_of<tessera::IOError>([&] { ta::from_zarr(path); }),
            path + ": not a Zarr v2 array (no .zarray)");
  std::filesystem::create_directories(path);
  std::ofstream(path + "/.zarray")
      << R"({"zarr_format": 2, "shape": [4], "chunks": [2], "dtype": "<c16",
    "compressor": null, "fill_value": 0, "order": "C", "filters": null})";
  EXPECT_EQ(
      error_of<tessera::IOError>([&] { ta::from_zarr(path); }),
      path + "/.zarray: dtype '<c16' is not supported (bool, int32, int64, float32, float64 are)");
  std::ofstream(path + "/.zarray")
      << R"({"zarr_format": 2, "shape": [4], "chunks": [2], "dtype": "<f8",
    "compressor": {"id": "lzma"}, "fill_value": 0, "order": "C", "filters": null})";
  EXPECT_EQ(error_of<tessera::IOError>([&] { ta::from_zarr(path); }),
            path + "/.zarray: compressor 'lzma' is not supported (zlib, zstd, blosc are)");
  std::ofstream(path + "/.zarray")
      << R"({"zarr_format": 2, "shape": [4], "chunks": [2], "dtype": "<f8",
    "compressor": {"id": "zlib", "level": 1}, "fill_value": 0, "order": "C", "filters": null})";
  std::ofstream(path + "/1") << "garbage";
  const std::string name = ta::from_zarr(path).name();
  EXPECT_NE(error_of<tessera::TaskError>([&] {
              ta::from_zarr(path).compute();
            }).find(path + "/1: corrupt zlib chunk"),
            std::string::npos);
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::to_zarr(ta::ones({5}, ta::Chunks{{2, 3}}), path);
            }),
            "to_zarr: chunks ((2, 3),) are not regular along axis 0 (Zarr needs equal blocks but "
            "the last); rechunk first");
  EXPECT_EQ(error_of<tessera::ValueError>(
                [&] { ta::to_zarr(ta::ones({5}, 2), path, {.compressor = "lzma"}); }),
            "to_zarr: compressor 'lzma' is not one of zlib, zstd, blosc, none");
}

TEST(Hdf5, BothWaysWithH5py) {
  if (!python_has("h5py"))
    GTEST_SKIP() << "python3-h5py is not installed (scripts/install-deps installs it)";
  TempDir dir;
  auto p = [&](const std::string& n) { return (dir.path() / n).string(); };
  const std::string made = run_python(dir, R"(import numpy as np, h5py
rng = np.random.default_rng(1)
with h5py.File('in.h5', 'w') as f:
    f['a'] = rng.normal(size=(19, 7))
    f['g/ints'] = np.arange(12, dtype='i8').reshape(3, 4)
    f['flags'] = np.array([True, False, True])
    np.save('a.npy', f['a'][:])
print('written')
)");
  ASSERT_NE(made.find("written"), std::string::npos) << made;
  EXPECT_EQ(ta::from_hdf5(p("in.h5"), "a", {4, 3}).compute(), ta::read_npy(p("a.npy")));
  EXPECT_EQ(ta::from_hdf5(p("in.h5"), "g/ints", 2).sum().compute().item<int64_t>(), 66);
  EXPECT_EQ(ta::from_hdf5(p("in.h5"), "flags").compute().dtype(), ta::DType::Bool);
  EXPECT_EQ(ta::count_nonzero(ta::from_hdf5(p("in.h5"), "flags")).compute().item<int64_t>(), 2);
  auto x = ta::random::normal({31, 9}, {8, 4}, 2);
  ta::write_npy(x.compute(), p("x.npy"));
  ta::to_hdf5(x, p("out.h5"), "data/x");
  ta::to_hdf5(x.astype(ta::DType::Float32), p("out.h5"), "x32");
  ta::to_hdf5(x > 0, p("out.h5"), "positive");
  const std::string out = run_python(dir, R"(import numpy as np, h5py
x = np.load('x.npy')
with h5py.File('out.h5', 'r') as f:
    ok = np.array_equal(f['data/x'][:], x) and f['data/x'].chunks == (8, 4)
    ok &= f['x32'].dtype == np.float32 and np.array_equal(f['x32'][:], x.astype(np.float32))
    ok &= f['positive'].dtype == bool and np.array_equal(f['positive'][:], x > 0)
print('ALL OK' if ok else 'MISMATCH')
)");
  EXPECT_NE(out.find("ALL OK"), std::string::npos) << out;
  EXPECT_EQ(error_of<tessera::IOError>([&] { ta::from_hdf5(p("in.h5"), "missing"); }),
            p("in.h5") + ":missing: no such dataset");
  EXPECT_EQ(error_of<tessera::IOError>([&] { ta::from_hdf5(p("none.h5"), "a"); }),
            p("none.h5") + ":a: no such file");
  EXPECT_EQ(error_of<tessera::IOError>([&] { ta::from_hdf5(p("x.npy"), "a"); }),
            p("x.npy") + ":a: not an HDF5 file (or it cannot be opened)");
}

TEST(Store, EveryBlockReachesTheSinkOnce) {
  auto x = ta::arange(0, 100, 1, 7);
  std::mutex m;
  std::vector<int64_t> seen;
  double total = 0;
  ta::store(x * 2, [&](std::span<const int64_t> block, const ta::NDArray& data) {
    std::lock_guard lock(m);
    seen.push_back(block[0]);
    for (double v : data.to_vector<double>()) total += v;
  });
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen.size(), 15u);
  EXPECT_EQ(seen.front(), 0);
  EXPECT_EQ(seen.back(), 14);
  EXPECT_EQ(total, 9900.0);
}
