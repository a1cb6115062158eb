// NDArray's memory used in place by Eigen and xtensor (no copy either way): compute()
// results as row-major matrices, strided views through their strides, and memory owned by
// Eigen wrapped as an NDArray and computed on. The values are checked against what Eigen
// and xtensor compute themselves.
#include <gtest/gtest.h>

#include <tessera/array.hpp>

#include <Eigen/Dense>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <memory>

namespace ta = tessera::array;

namespace {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMatrix>;
using StridedMap = Eigen::Map<const RowMatrix, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

// A strided NDArray view as an Eigen map (strides in elements: outer = rows, inner = columns).
StridedMap eigen_view(const ta::NDArray& a) {
  return {static_cast<const double*>(a.raw_data()), a.shape()[0], a.shape()[1],
          Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(a.strides()[0], a.strides()[1])};
}

}  // namespace

TEST(Views, EigenMapsComputeResultsInPlace) {
  const ta::Array X = ta::random::uniform({40, 30}, {16, 8}, 3);
  const ta::NDArray x = X.compute();
  const ta::NDArray xtx = ta::matmul(X.T(), X).compute();
  const ConstMap mx(x.data<double>(), 40, 30);
  const ConstMap mxtx(xtx.data<double>(), 30, 30);
  // The map reads the NDArray's own buffer.
  EXPECT_EQ(mx.data(), x.data<double>());
  EXPECT_DOUBLE_EQ(mx(7, 11), x.at<double>({7, 11}));
  // Eigen's own product agrees with tessera's blocked BLAS matmul.
  const RowMatrix want = mx.transpose() * mx;
  EXPECT_LT((mxtx - want).cwiseAbs().maxCoeff(), 1e-12 * want.cwiseAbs().maxCoeff());
}

TEST(Views, EigenMapsStridedViewsThroughTheirStrides) {
  const ta::NDArray x = ta::arange(0, 60, 1, 100).compute().reshape({6, 10});
  const ta::NDArray t = x.transpose();               // (10, 6), strides (1, 10)
  const ta::NDArray s = x.slice(1, 0, 10, 3);        // columns 0, 3, 6, 9: strides (10, 3)
  ASSERT_FALSE(t.is_contiguous());
  const StridedMap mt = eigen_view(t), ms = eigen_view(s);
  EXPECT_EQ(mt.data(), x.data<double>());  // no copy
  const ConstMap mx(x.data<double>(), 6, 10);
  EXPECT_TRUE(mt.isApprox(mx.transpose(), 0));
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 4; ++j) EXPECT_EQ(ms(i, j), mx(i, 3 * j)) << i << "," << j;
  }
}

TEST(Views, EigenOwnedMemoryWrappedWithoutCopy) {
  // A matrix Eigen owns, shared with tessera (the shared_ptr keeps it alive), chunked and
  // reduced by tessera.
  auto m = std::make_shared<RowMatrix>(RowMatrix::Random(50, 20));
  const ta::NDArray nd = ta::NDArray::from_buffer(m, m->data(), ta::DType::Float64, {50, 20});
  EXPECT_EQ(nd.data<double>(), m->data());
  const ta::NDArray colsum = ta::from_ndarray(nd, {7, 6}).sum(0).compute();
  const Eigen::RowVectorXd want = m->colwise().sum();
  for (int j = 0; j < 20; ++j) EXPECT_NEAR(colsum.at<double>({j}), want(j), 1e-12);
  // Column-major memory is a strided view: Eigen's default layout, read through strides.
  auto c = std::make_shared<Eigen::MatrixXd>(Eigen::MatrixXd::Random(9, 4));
  const ta::NDArray cm =
      ta::NDArray::from_buffer(c, c->data(), ta::DType::Float64, {9, 4}, {1, 9});
  EXPECT_DOUBLE_EQ(cm.at<double>({5, 3}), (*c)(5, 3));
  const ta::NDArray doubled = (ta::from_ndarray(cm, 4) * 2).compute();
  EXPECT_DOUBLE_EQ(doubled.at<double>({8, 2}), 2 * (*c)(8, 2));
}

TEST(Views, XtensorAdaptsResultsAndViews) {
  const ta::Array A = ta::random::normal({8, 5, 6}, {3, 5, 4}, 9);
  const ta::NDArray a = A.compute();
  const std::vector<size_t> shape(a.shape().begin(), a.shape().end());
  auto xa = xt::adapt(a.data<double>(), static_cast<size_t>(a.size()), xt::no_ownership(), shape);
  EXPECT_EQ(&xa(0, 0, 0), a.data<double>());
  // xtensor's reductions of the adapted memory agree with tessera's.
  const ta::NDArray s02 = A.sum({0, 2}).compute();
  const xt::xarray<double> xs = xt::sum(xa, std::vector<size_t>{0, 2});
  for (size_t j = 0; j < 5; ++j) EXPECT_NEAR(s02.at<double>({static_cast<int64_t>(j)}), xs(j), 1e-12);
  EXPECT_NEAR(A.max().compute().item<double>(), xt::amax(xa)(), 0);
  // A strided tessera view adapted with its strides is the same as xtensor's own view.
  const ta::NDArray v = a.slice(2, 1, 6, 2).transpose();  // (3, 5, 8)
  const std::vector<size_t> vshape(v.shape().begin(), v.shape().end());
  const std::vector<std::ptrdiff_t> vstrides(v.strides().begin(), v.strides().end());
  auto xv = xt::adapt(static_cast<const double*>(v.raw_data()), static_cast<size_t>(v.size()),
                      xt::no_ownership(), vshape, vstrides);
  const xt::xarray<double> want =
      xt::transpose(xt::view(xa, xt::all(), xt::all(), xt::range(1, 6, 2)));
  ASSERT_TRUE(std::equal(xv.shape().begin(), xv.shape().end(), want.shape().begin(),
                         want.shape().end()));
  EXPECT_TRUE(xt::all(xt::equal(xv, want)));
}
