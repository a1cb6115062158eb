// HDF5 datasets: chunked reads (a hyperslab per block) and block-by-block writes, through
// the HDF5 C library. Calls into the library are serialized: one file handle per task.
#include <fmt/format.h>
#include <hdf5.h>

#include <filesystem>
#include <mutex>

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera::array {

namespace {

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

// Closes an HDF5 handle on scope exit.
struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Handle() {
    if (id >= 0) close(id);
  }
};

[[noreturn]] void fail(const std::string& path, const std::string& dataset,
                       const std::string& what) {
  throw IOError(fmt::format("{}:{}: {}", path, dataset, what));
}

// The enum h5py uses for NumPy bools (int8 with FALSE = 0, TRUE = 1), so both read it.
hid_t bool_type() {
  static const hid_t t = [] {
    const hid_t e = H5Tenum_create(H5T_NATIVE_INT8);
    int8_t v = 0;
    H5Tenum_insert(e, "FALSE", &v);
    v = 1;
    H5Tenum_insert(e, "TRUE", &v);
    return e;
  }();
  return t;
}

hid_t native_type(DType t) {
  switch (t) {
    case DType::Bool:
      return bool_type();
    case DType::Int32:
      return H5T_NATIVE_INT32;
    case DType::Int64:
      return H5T_NATIVE_INT64;
    case DType::Float32:
      return H5T_NATIVE_FLOAT;
    case DType::Float64:
      break;
  }
  return H5T_NATIVE_DOUBLE;
}

struct Info {
  DType dtype;
  Shape shape;
};

Info dataset_info(hid_t ds, const std::string& path, const std::string& name) {
  Handle type{H5Dget_type(ds), H5Tclose};
  Handle space{H5Dget_space(ds), H5Sclose};
  Info info;
  const H5T_class_t cls = H5Tget_class(type.id);
  const size_t size = H5Tget_size(type.id);
  const bool is_signed = cls == H5T_INTEGER && H5Tget_sign(type.id) == H5T_SGN_2;
  if (cls == H5T_FLOAT && size == 8)
    info.dtype = DType::Float64;
  else if (cls == H5T_FLOAT && size == 4)
    info.dtype = DType::Float32;
  else if (cls == H5T_INTEGER && size == 8 && is_signed)
    info.dtype = DType::Int64;
  else if (cls == H5T_INTEGER && size == 4 && is_signed)
    info.dtype = DType::Int32;
  else if (cls == H5T_ENUM && size == 1)
    info.dtype = DType::Bool;  // h5py stores numpy bools as an enum
  else
    fail(path, name,
         "unsupported element type (bool, int32, int64, float32, float64 are supported)");
  const int nd = H5Sget_simple_extent_ndims(space.id);
  if (nd < 0) fail(path, name, "not a simple dataspace");
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  for (hsize_t d : dims) info.shape.push_back(static_cast<int64_t>(d));
  return info;
}

hid_t open_file(const std::string& path, unsigned flags, const std::string& dataset) {
  if (!std::filesystem::exists(path)) fail(path, dataset, "no such file");
  const hid_t f = H5Fopen(path.c_str(), flags, H5P_DEFAULT);
  if (f < 0) fail(path, dataset, "not an HDF5 file (or it cannot be opened)");
  return f;
}

NDArray read_hyperslab(const std::string& path, const std::string& dataset,
                       const std::vector<int64_t>& lo, const std::vector<int64_t>& extent) {
  std::lock_guard lock(hdf5_mutex());
  Handle f{open_file(path, H5F_ACC_RDONLY, dataset), H5Fclose};
  Handle ds{H5Dopen2(f.id, dataset.c_str(), H5P_DEFAULT), H5Dclose};
  if (ds.id < 0) fail(path, dataset, "no such dataset");
  const Info info = dataset_info(ds.id, path, dataset);
  NDArray out = NDArray::empty(info.dtype, extent);
  if (out.size() == 0) return out;
  Handle file_space{H5Dget_space(ds.id), H5Sclose};
  std::vector<hsize_t> start(lo.begin(), lo.end()), count(extent.begin(), extent.end());
  if (!lo.empty())
    H5Sselect_hyperslab(file_space.id, H5S_SELECT_SET, start.data(), nullptr, count.data(),
                        nullptr);
  Handle mem_space{lo.empty()
                       ? H5Screate(H5S_SCALAR)
                       : H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr),
                   H5Sclose};
  if (H5Dread(ds.id, native_type(info.dtype), mem_space.id, file_space.id, H5P_DEFAULT,
              out.raw_mutable_data()) < 0) {
    fail(path, dataset, "read failed");
  }
  return out;
}
TESSERA_REGISTER_AS("array.read-hdf5", read_hyperslab);

int64_t write_hyperslab(const NDArray& block, const std::string& path, const std::string& dataset,
                        const std::vector<int64_t>& lo) {
  const NDArray b = block.contiguous();
  std::lock_guard lock(hdf5_mutex());
  Handle f{open_file(path, H5F_ACC_RDWR, dataset), H5Fclose};
  Handle ds{H5Dopen2(f.id, dataset.c_str(), H5P_DEFAULT), H5Dclose};
  if (ds.id < 0) fail(path, dataset, "no such dataset");
  if (b.size() == 0) return 0;
  Handle file_space{H5Dget_space(ds.id), H5Sclose};
  std::vector<hsize_t> start(lo.begin(), lo.end()), count(b.shape().begin(), b.shape().end());
  if (!lo.empty())
    H5Sselect_hyperslab(file_space.id, H5S_SELECT_SET, start.data(), nullptr, count.data(),
                        nullptr);
  Handle mem_space{lo.empty()
                       ? H5Screate(H5S_SCALAR)
                       : H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr),
                   H5Sclose};
  if (H5Dwrite(ds.id, native_type(b.dtype()), mem_space.id, file_space.id, H5P_DEFAULT,
               b.raw_data()) < 0) {
    fail(path, dataset, "write failed");
  }
  return static_cast<int64_t>(b.nbytes());
}
TESSERA_REGISTER_AS("array.write-hdf5", write_hyperslab);

}  // namespace

Array from_hdf5(const std::string& path, const std::string& dataset, const ChunkSpec& chunks) {
  Info info;
  {
    std::lock_guard lock(hdf5_mutex());
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors become exceptions, not stderr noise
    Handle f{open_file(path, H5F_ACC_RDONLY, dataset), H5Fclose};
    if (H5Lexists(f.id, dataset.c_str(), H5P_DEFAULT) <= 0) fail(path, dataset, "no such dataset");
    Handle ds{H5Dopen2(f.id, dataset.c_str(), H5P_DEFAULT), H5Dclose};
    if (ds.id < 0) fail(path, dataset, "no such dataset");
    info = dataset_info(ds.id, path, dataset);
  }
  Chunks ch = chunks.resolve(info.shape, info.dtype);
  const auto mtime = std::filesystem::last_write_time(path).time_since_epoch().count();
  std::string name = make_name(
      "from-hdf5",
      std::vector<Value>{Value::of(std::filesystem::absolute(path).string()), Value::of(dataset),
                         Value::of(static_cast<int64_t>(mtime)), Value::of(chunks_str(ch))});
  const auto offs = offsets_of(ch);
  const Chunks cc = ch;
  auto layer = std::make_shared<BlockLayer>(
      name, "from-hdf5", numblocks_of(ch), std::vector<std::string>{},
      [path, dataset, offs, cc](std::span<const int64_t> c, std::vector<Key>&) {
        std::vector<int64_t> lo(c.size());
        for (size_t k = 0; k < c.size(); ++k) lo[k] = offs[k][c[k]];
        return Task::call(get_op("array.read-hdf5"),
                          {Arg(Value::of(path)), Arg(Value::of(dataset)), Arg(Value::of(lo)),
                           Arg(Value::of(block_shape(cc, c)))});
      });
  return make_array(std::move(name), "from-hdf5", info.dtype, info.shape, std::move(ch),
                    std::move(layer), {});
}

void to_hdf5(const Array& a, const std::string& path, const std::string& dataset,
             const ComputeOptions& options) {
  {
    std::lock_guard lock(hdf5_mutex());
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    const bool exists = std::filesystem::exists(path);
    Handle f{exists ? H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)
                    : H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
             H5Fclose};
    if (f.id < 0)
      fail(path, dataset,
           exists ? "not an HDF5 file (or it cannot be opened for writing)" : "cannot create");
    if (H5Lexists(f.id, dataset.c_str(), H5P_DEFAULT) > 0)
      H5Ldelete(f.id, dataset.c_str(), H5P_DEFAULT);
    std::vector<hsize_t> dims(a.shape().begin(), a.shape().end());
    Handle space{
        a.ndim() == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(a.ndim(), dims.data(), nullptr),
        H5Sclose};
    Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
    H5Pset_create_intermediate_group(lcpl.id, 1);
    Handle dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
    bool chunkable = a.ndim() > 0 && a.size() > 0;
    std::vector<hsize_t> chunk;
    for (const int64_t c : a.chunksize())
      chunk.push_back(static_cast<hsize_t>(std::max<int64_t>(c, 1)));
    if (chunkable) H5Pset_chunk(dcpl.id, a.ndim(), chunk.data());
    Handle ds{H5Dcreate2(f.id, dataset.c_str(), native_type(a.dtype()), space.id, lcpl.id, dcpl.id,
                         H5P_DEFAULT),
              H5Dclose};
    if (ds.id < 0) fail(path, dataset, "cannot create the dataset");
  }
  const std::string name =
      make_name("to-hdf5", std::vector<Value>{token_of(a), Value::of(path), Value::of(dataset)});
  const auto offs = offsets_of(a.chunks());
  compute_per_block(
      a, name,
      [path, dataset, offs](std::span<const int64_t> c, Key key) {
        std::vector<int64_t> lo(c.size());
        for (size_t k = 0; k < c.size(); ++k) lo[k] = offs[k][c[k]];
        return Task::call(get_op("array.write-hdf5"),
                          {Arg::ref(std::move(key)), Arg(Value::of(path)), Arg(Value::of(dataset)),
                           Arg(Value::of(lo))});
      },
      options);
}

}  // namespace tessera::array
