// rechunk's plan: intermediate chunkings bounded by the block size limit, fewer pieces than
// one step, the same stages as dask's plan_rechunk on the cases that motivate it, and the
// values unchanged through every stage.
#include <gtest/gtest.h>

#include <tessera/array.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <sstream>

#include "array/numpy_check.hpp"
#include "test_support.hpp"

namespace ta = tessera::array;
using tessera::testing::error_of;
using tessera::testing::run_python;
using tessera::testing::TempDir;

namespace {

ta::Chunks regular(const std::vector<int64_t>& shape, const std::vector<int64_t>& block) {
  ta::Chunks c(shape.size());
  for (size_t k = 0; k < shape.size(); ++k) {
    for (int64_t i = 0; i < shape[k]; i += block[k]) c[k].push_back(std::min(block[k], shape[k] - i));
  }
  return c;
}

double largest_block(const ta::Chunks& c) {
  double n = 1;
  for (const auto& a : c) n *= static_cast<double>(*std::max_element(a.begin(), a.end()));
  return n;
}

// Pieces when blocks `a` are cut into blocks `b` (counted here independently of the library:
// the distinct boundaries of both, per axis, multiplied).
double pieces(const ta::Chunks& a, const ta::Chunks& b) {
  double n = 1;
  for (size_t k = 0; k < a.size(); ++k) {
    std::vector<int64_t> cuts;
    int64_t s = 0;
    for (int64_t x : a[k]) cuts.push_back(s += x);
    s = 0;
    for (int64_t x : b[k]) cuts.push_back(s += x);
    std::sort(cuts.begin(), cuts.end());
    n *= static_cast<double>(std::unique(cuts.begin(), cuts.end()) - cuts.begin());
  }
  return n;
}

std::string py_chunks(const ta::Chunks& c) {
  std::ostringstream o;
  o << "(";
  for (const auto& a : c) {
    o << "(";
    for (int64_t x : a) o << x << ",";
    o << "),";
  }
  o << ")";
  return o.str();
}

struct Case {
  std::vector<int64_t> shape, from, to;
  int64_t limit;  // bytes; 0 = the default
};

const Case kCases[] = {
    {{10000, 10000}, {1000, 10000}, {10000, 1000}, 0},  // the benchmark's rechunk
    {{10000, 10000}, {1, 10000}, {10000, 1}, 0},        // rows to columns: 10^8 pieces in one step
    {{10000, 10000}, {100, 100}, {10000, 1}, 0},
    {{1000, 1000, 100}, {1, 1000, 100}, {1000, 1, 100}, 0},
    {{1000, 1000, 100}, {10, 1000, 10}, {1000, 10, 1}, 1 << 20},
    {{4000, 4000}, {1, 4000}, {4000, 1}, 1 << 16},  // a small limit: many stages
};

}  // namespace

TEST(RechunkPlan, BlocksStayUnderTheLimitAndPiecesShrink) {
  for (const Case& c : kCases) {
    const ta::Chunks from = regular(c.shape, c.from), to = regular(c.shape, c.to);
    const auto plan = ta::plan_rechunk(from, to, ta::DType::Float64,
                                       {.block_size_limit = c.limit, .piece_cost_bytes = 0});
    ASSERT_FALSE(plan.empty());
    EXPECT_EQ(plan.back(), to);
    const double limit =
        std::max({static_cast<double>(c.limit ? c.limit : ta::chunk_size_limit()) / 8,
                  largest_block(from), largest_block(to)});
    double total = 0;
    ta::Chunks prev = from;
    for (const auto& stage : plan) {
      EXPECT_LE(largest_block(stage), limit) << py_chunks(stage);
      for (size_t k = 0; k < stage.size(); ++k) {
        EXPECT_EQ(std::accumulate(stage[k].begin(), stage[k].end(), int64_t{0}), c.shape[k]);
      }
      total += pieces(prev, stage);
      prev = stage;
    }
    if (plan.size() > 1) {
      EXPECT_LT(total, pieces(from, to)) << "stages: " << plan.size();
    }
  }
  // Rows to columns of 10000 x 10000: 10^8 pieces in one step, under 10^5 planned.
  const auto plan = ta::plan_rechunk(regular({10000, 10000}, {1, 10000}),
                                     regular({10000, 10000}, {10000, 1}), ta::DType::Float64);
  double total = 0;
  ta::Chunks prev = regular({10000, 10000}, {1, 10000});
  for (const auto& s : plan) total += pieces(prev, s), prev = s;
  EXPECT_LT(total, 1e5);
}

TEST(RechunkPlan, SameStagesAsDask) {
  if (!tessera::testing::numpy_available()) GTEST_SKIP() << TESSERA_PYTHON " cannot import numpy";
  TempDir dir;
  std::ostringstream script, ours;
  script << "from dask.array.rechunk import plan_rechunk\n";
  for (const Case& c : kCases) {
    const ta::Chunks from = regular(c.shape, c.from), to = regular(c.shape, c.to);
    script << "print([tuple(len(a) for a in s) for s in plan_rechunk(" << py_chunks(from) << ", "
           << py_chunks(to) << ", 8, block_size_limit=" << (c.limit ? std::to_string(c.limit) : "None")
           << ")])\n";
    ours << "[";
    const auto plan = ta::plan_rechunk(from, to, ta::DType::Float64,
                                       {.block_size_limit = c.limit, .piece_cost_bytes = 0});
    for (size_t i = 0; i < plan.size(); ++i) {
      ours << (i ? ", " : "") << "(";
      for (size_t k = 0; k < plan[i].size(); ++k)
        ours << (k ? ", " : "") << plan[i][k].size() << (plan[i].size() == 1 ? "," : "");
      ours << ")";
    }
    ours << "]\n";
  }
  const std::string dask = run_python(dir, script.str());
  if (dask.find("ModuleNotFoundError") != std::string::npos) GTEST_SKIP() << "no dask";
  // Block counts per stage agree with dask's, except where the two round a cut differently
  // (dask's 38 blocks of 3 against our 40 in the fifth case's second stage).
  std::istringstream d(dask), o(ours.str());
  std::string dl, ol;
  int i = 0;
  while (std::getline(d, dl) && std::getline(o, ol)) {
    if (i++ == 4) {
      EXPECT_EQ(std::count(dl.begin(), dl.end(), '('), std::count(ol.begin(), ol.end(), '('));
      continue;
    }
    EXPECT_EQ(ol, dl) << "case " << i;
  }
  EXPECT_EQ(i, 6) << dask;
}

TEST(RechunkPlan, StagesOnlyWhenTheyCostLessThanThePieces) {
  // The benchmark's rechunk: 100 pieces in one step; dask's rule stages it (an extra copy of
  // 800 MB), the cost rule does not.
  const ta::Chunks rows = regular({10000, 10000}, {1000, 10000}),
                   cols = regular({10000, 10000}, {10000, 1000});
  EXPECT_EQ(ta::plan_rechunk(rows, cols, ta::DType::Float64).size(), 1U);
  EXPECT_EQ(ta::plan_rechunk(rows, cols, ta::DType::Float64, {.piece_cost_bytes = 0}).size(), 2U);
  // Ten-row blocks to ten-column blocks: 10^6 pieces of 800 bytes; staged.
  EXPECT_EQ(ta::plan_rechunk(regular({10000, 10000}, {10, 10000}),
                             regular({10000, 10000}, {10000, 10}), ta::DType::Float64)
                .size(),
            2U);
  // A piece cost of a whole array's copy stages even the benchmark's case.
  EXPECT_EQ(
      ta::plan_rechunk(rows, cols, ta::DType::Float64, {.piece_cost_bytes = 800'000'000}).size(),
      2U);
}

TEST(RechunkPlan, OneStepWhenPiecesAreFew) {
  // Matching boundaries (pure splits and merges) never need a stage.
  const ta::Chunks from = regular({600, 600}, {100, 600}), to = regular({600, 600}, {300, 200});
  EXPECT_EQ(ta::plan_rechunk(from, to, ta::DType::Float64), std::vector<ta::Chunks>{to});
  // One axis: the pieces never exceed the blocks of both.
  const ta::Chunks a{{1, 1, 1, 1, 1, 1, 1, 1}}, b{{8}};
  EXPECT_EQ(ta::plan_rechunk(a, b, ta::DType::Int32), std::vector<ta::Chunks>{b});
  // Zero-length axes.
  EXPECT_EQ(ta::plan_rechunk({{0}, {5, 5}}, {{0}, {10}}, ta::DType::Bool),
            (std::vector<ta::Chunks>{{{0}, {10}}}));
}

TEST(RechunkPlan, ValuesSurviveEveryStage) {
  std::mt19937_64 rng(7);
  auto random_chunks = [&](int64_t n) {
    std::vector<int64_t> c;
    int64_t left = n;
    while (left > 0) {
      const int64_t b = std::min<int64_t>(left, 1 + static_cast<int64_t>(rng() % 6));
      c.push_back(b);
      left -= b;
    }
    return c;
  };
  int multi = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t low = trial % 2 == 0 ? 8 : 1;  // long enough axes for stages when even
    const ta::Shape shape{low + static_cast<int64_t>(rng() % 17), low + static_cast<int64_t>(rng() % 17),
                          1 + static_cast<int64_t>(rng() % 5)};
    const int64_t n = shape[0] * shape[1] * shape[2];
    const ta::NDArray want = ta::arange(0, static_cast<double>(n), 1, 1000).compute().reshape(shape);
    ta::Chunks from, to;
    for (int64_t s : shape) from.push_back(random_chunks(s)), to.push_back(random_chunks(s));
    // Row-like to column-like blocks, with tiny limits, so that plans have stages.
    if (trial % 2 == 0) {
      from[0] = std::vector<int64_t>(static_cast<size_t>(shape[0]), 1);
      from[1] = {shape[1]};
      to[0] = {shape[0]};
      to[1] = std::vector<int64_t>(static_cast<size_t>(shape[1]), 1);
    }
    const ta::RechunkOptions opt{
        .threshold = 1.5, .block_size_limit = 8 * (1 + trial % 7), .piece_cost_bytes = 0};
    const ta::Array x = ta::from_ndarray(want, from);
    const ta::Array y = x.rechunk(to, opt);
    EXPECT_EQ(y.chunks(), to);
    const auto plan = ta::plan_rechunk(from, to, ta::DType::Float64, opt);
    multi += plan.size() > 1;
    // One layer per stage.
    int stages = 0;
    for (const auto& layer : y.graph().layers()) stages += layer->name().rfind("rechunk", 0) == 0;
    EXPECT_EQ(stages, static_cast<int>(plan.size()));
    const ta::NDArray got = y.compute({.scheduler = trial % 3 == 0 ? "sync" : "threads"});
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_TRUE(std::equal(got.data<double>(), got.data<double>() + n, want.data<double>()))
        << "trial " << trial;
  }
  EXPECT_GE(multi, 8);  // the trials do exercise multi-stage plans
}

TEST(RechunkPlan, BadOptions) {
  const ta::Array x = ta::ones({4, 4}, 2);
  EXPECT_EQ(error_of<tessera::ValueError>([&] { x.rechunk(4, {.threshold = 0.5}); }),
            "rechunk: threshold must be at least 1, not 0.5");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { x.rechunk(4, {.block_size_limit = -1}); }),
            "rechunk: block_size_limit must be positive (or 0 for the configured chunk size), not "
            "-1");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { x.rechunk(4, {.piece_cost_bytes = -2}); }),
            "rechunk: piece_cost_bytes must not be negative, not -2");
  EXPECT_EQ(error_of<tessera::ValueError>(
                [&] { ta::plan_rechunk({{2, 2}}, {{4}, {4}}, ta::DType::Float64); }),
            "plan_rechunk: chunks ((2, 2),) and ((4,), (4,)) have different numbers of axes");
  EXPECT_EQ(
      error_of<tessera::ValueError>([&] { ta::plan_rechunk({{2, 2}}, {{5}}, ta::DType::Float64); }),
      "plan_rechunk: chunks ((2, 2),) and ((5,),) cover different lengths along axis 0 (4 and 5)");
}
