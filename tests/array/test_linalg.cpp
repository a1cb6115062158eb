// Linear algebra against NumPy: factorizations are checked by their defining identities and
// against numpy.linalg (tolerance: allclose with rtol 1e-7, atol 1e-9 on O(1)-scaled data).
#include <gtest/gtest.h>

#include <tessera/array.hpp>

#include <cmath>

#include "array/numpy_check.hpp"
#include "test_support.hpp"

namespace ta = tessera::array;
namespace la = tessera::array::linalg;
using tessera::testing::error_of;
using tessera::testing::numpy_available;
using tessera::testing::run_python;
using tessera::testing::TempDir;

TEST(Linalg, MatchesNumPy) {
  if (!numpy_available())
    GTEST_SKIP() << TESSERA_PYTHON " cannot import numpy (scripts/install-deps installs it)";
  TempDir dir;
  auto w = [&](const ta::Array& a, const std::string& n) {
    ta::write_npy(a.compute(), (dir.path() / (n + ".npy")).string());
  };
  auto A = ta::random::normal({200, 12}, {37, 12}, 3);
  auto S = ta::random::uniform({60, 60}, {16, 16}, 4);
  w(A, "A");
  w(S, "S");
  auto [q, r] = la::qr(A);
  w(q, "q");
  w(r, "r");
  auto wide = la::qr(ta::random::normal({90, 7}, {30, 3}, 11));  // columns rechunked to one block
  w(wide.q, "q2");
  w(wide.r, "r2");
  w(ta::random::normal({90, 7}, {30, 3}, 11), "A2");
  auto sv = la::svd(A);
  w(sv.u, "u");
  w(sv.s, "s");
  w(sv.v, "v");
  auto SPD = ta::matmul(S.T(), S) + ta::eye(60, 16) * 60;
  w(SPD, "spd");
  w(la::cholesky(SPD), "L");
  w(la::cholesky(SPD.rechunk({25, 25})), "L2");
  auto b = ta::random::normal({60}, 16, 5);
  w(b, "b");
  w(la::solve(S, b), "x");
  w(la::solve(S, ta::random::normal({60, 4}, 16, 5)), "x2");
  w(ta::random::normal({60, 4}, 16, 5), "b2");
  // Blocked LU: irregular blocks, columns cut differently from rows, b cut differently again.
  auto G = ta::random::normal({100, 100}, ta::Chunks{{10, 35, 30, 25}, {50, 50}}, 12);
  auto g = ta::random::normal({100, 5}, {40, 2}, 13);
  w(G, "G");
  w(g, "g");
  const auto xg = la::solve(G, g);
  EXPECT_EQ(xg.chunks(), g.chunks());
  w(xg, "xg");
  w(la::solve(G.astype(ta::DType::Float32), g[{ta::slice(), 0}].astype(ta::DType::Float32)), "xg32");
  auto bb = ta::random::normal({200, 3}, {37, 3}, 6);
  w(bb, "bb");
  auto ls = la::lstsq(A, bb);
  w(ls.x, "lx");
  w(ls.residuals, "lr");
  w(la::norm(A), "n1");
  w(la::norm(A, 1.0), "n2");
  w(la::norm(A, 2.0), "n3");
  w(la::norm(b, INFINITY), "n4");
  w(la::norm(b, 3.0), "n5");
  w(la::norm(A, -INFINITY), "n6");
  w(la::norm(A, "nuc"), "n7");
  // A rank-5 matrix: the randomized SVD recovers its singular values.
  auto low =
      ta::matmul(ta::random::normal({80, 5}, {20, 5}, 9), ta::random::normal({5, 50}, {5, 10}, 10));
  w(low, "low");
  w(la::svd_compressed(low, 5, 1, 2).s, "scs");
  auto T = ta::random::normal({4, 5, 6}, {2, 3, 4}, 7),
       U = ta::random::normal({5, 6, 3}, {3, 2, 3}, 8);
  w(T, "T");
  w(U, "U");
  w(ta::tensordot(T, U, 2), "td");
  w(ta::tensordot(T, U, {1}, {0}), "td2");
  w(ta::matmul(A, ta::ones({12}, 5)), "mv");
  w(ta::matmul(ta::ones({200}, 50), A), "vm");
  const std::string out = run_python(dir, R"(import numpy as np
L = lambda n: np.load(n + '.npy')
bad = []
def ok(name, cond):
    if not cond: bad.append(name)
close = lambda a, b: a.shape == np.shape(b) and np.allclose(a, b, rtol=1e-7, atol=1e-9)
A, S, q, r = L('A'), L('S'), L('q'), L('r')
ok('qr', close(q @ r, A) and close(q.T @ q, np.eye(12)) and close(np.triu(r), r))
ok('qr2', close(L('q2') @ L('r2'), L('A2')))
u, s, v = L('u'), L('s'), L('v')
ok('svd', close(u * s @ v, A) and close(s, np.linalg.svd(A, compute_uv=False)))
ok('cholesky', close(L('L'), np.linalg.cholesky(L('spd'))) and close(L('L2'), np.linalg.cholesky(L('spd'))))
ok('solve', close(L('x'), np.linalg.solve(S, L('b'))) and close(L('x2'), np.linalg.solve(S, L('b2'))))
G, g = L('G'), L('g')
ok('solve-blocked', close(L('xg'), np.linalg.solve(G, g)))
x32 = L('xg32')
ok('solve-f32', x32.dtype == np.float32 and np.allclose(x32, np.linalg.solve(G.astype(np.float32), g[:, 0].astype(np.float32)), rtol=1e-3, atol=1e-4))
x, res, _, _ = np.linalg.lstsq(A, L('bb'), rcond=None)
ok('lstsq', close(L('lx'), x) and close(L('lr'), res))
b = L('b')
ok('norms', close(L('n1'), np.linalg.norm(A)) and close(L('n2'), np.linalg.norm(A, 1)) and
   close(L('n3'), np.linalg.norm(A, 2)) and close(L('n4'), np.linalg.norm(b, np.inf)) and
   close(L('n5'), np.linalg.norm(b, 3)) and close(L('n6'), np.linalg.norm(A, -np.inf)) and
   close(L('n7'), np.linalg.norm(A, 'nuc')))
ok('svd_compressed', close(L('scs'), np.linalg.svd(L('low'), compute_uv=False)[:5]))
T, U = L('T'), L('U')
ok('tensordot', close(L('td'), np.tensordot(T, U, 2)) and close(L('td2'), np.tensordot(T, U, ([1], [0]))))
ok('matvec', close(L('mv'), A @ np.ones(12)) and close(L('vm'), np.ones(200) @ A))
print('ALL OK' if not bad else 'MISMATCH ' + ' '.join(bad))
)");
  EXPECT_NE(out.find("ALL OK"), std::string::npos) << out;
}

TEST(Linalg, BadInputIsNamed) {
  auto sq = ta::ones({4, 4}, 2);
  // A task's failure reaches compute() naming the block's key and the op.
  const std::string name = la::cholesky(-ta::eye(4, 2)).name();
  EXPECT_EQ(error_of<tessera::TaskError>([&] { la::cholesky(-ta::eye(4, 2)).compute(); }),
            "task '('" + name +
                "', 0, 0)' (op 'linalg.cholesky-diag') raised tessera::array::LinAlgError: Matrix "
                "is not positive definite");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              la::cholesky(ta::ones({4, 3}, 2));
            }),
            "cholesky: the matrix must be square, not (4, 3)");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { la::qr(ta::ones({4}, 2)); }),
            "tsqr: 1-dimensional array given, a 2-D matrix is needed (shape (4,))");
  // Pivoting stays within diagonal blocks: a nonsingular matrix whose first diagonal block is
  // zero fails with an error that says so; a singular one says it is singular.
  const auto swap = ta::from_ndarray(
      ta::NDArray::from_vector(std::vector<double>{0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0},
                               {4, 4}),
      2);
  const auto xs = la::solve(swap, ta::ones({4}, 2));
  std::string lu;  // the factors' layer
  for (const auto& layer : xs.graph().layers()) {
    const std::string& n = layer->name();
    if (n.rfind("lu-", 0) == 0 && n.rfind("lu-forward", 0) != 0 && n.rfind("lu-back", 0) != 0) lu = n;
  }
  EXPECT_EQ(error_of<tessera::TaskError>([&] { xs.compute({.scheduler = "sync"}); }),
            "task '('" + lu +
                "', 0, 0)' (op 'linalg.lu-diag') raised tessera::array::LinAlgError: Singular "
                "matrix: diagonal block 0 of 2 is singular after elimination (pivoting stays "
                "within blocks; larger blocks may avoid this)");
  EXPECT_NEAR(la::solve(swap.rechunk(4), ta::ones({4}, 2)).compute().at<double>({0}), 1.0, 0);
  EXPECT_NE(error_of<tessera::TaskError>([&] { la::solve(ta::ones({3, 3}, 3), ta::ones({3}, 3)).compute(); })
                .find("raised tessera::array::LinAlgError: Singular matrix"),
            std::string::npos);
  EXPECT_EQ(error_of<tessera::ValueError>([&] { la::solve(sq, ta::ones({5}, 2)); }),
            "solve: b of shape (5,) does not fit a of shape (4, 4)");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { la::svd_compressed(sq, 5); }),
            "svd_compressed: rank k = 5 must be between 1 and 4 for shape (4, 4)");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { la::norm(sq, "max"); }),
            "norm: invalid ord 'max' (use \"fro\", \"nuc\" or a number)");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              ta::tensordot(sq, ta::ones({3, 4}, 2), {1}, {0});
            }),
            "tensordot: shape mismatch for sum: axis 1 of (4, 4) and axis 0 of (3, 4)");
}
