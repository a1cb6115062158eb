// Zarr v2 directory stores (read and write) with numcodecs' zlib, zstd and blosc codecs,
// and store() for any block sink.
#include <blosc.h>
#include <fmt/format.h>
#include <zlib.h>
#include <zstd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"
#include "tessera/core/tokenize.hpp"

namespace tessera::array {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw IOError(fmt::format("{}: {}", path, what));
}

std::string read_file(const std::string& path, bool must_exist) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (must_exist) fail(path, "cannot open");
    return {};
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const void* data, size_t n) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail(path, "cannot create");
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  if (!out) fail(path, "write failed");
}

// The codec of a store, as its JSON `compressor` entry says.
struct Codec {
  std::string id;  // "" (none), "zlib", "zstd", "blosc"
  int level = 1;
  std::string cname = "lz4";
  int shuffle = 1;

  static Codec from_json(const json& j, const std::string& path) {
    Codec c;
    if (j.is_null()) return c;
    c.id = j.value("id", "");
    if (c.id == "zlib" || c.id == "gzip") {
      c.level = j.value("level", 1);
      if (c.id == "gzip") fail(path, "compressor 'gzip' is not supported (zlib, zstd, blosc are)");
    } else if (c.id == "zstd") {
      c.level = j.value("level", 1);
    } else if (c.id == "blosc") {
      c.cname = j.value("cname", "lz4");
      c.level = j.value("clevel", 5);
      c.shuffle = j.value("shuffle", 1);
    } else {
      fail(path, fmt::format("compressor '{}' is not supported (zlib, zstd, blosc are)", c.id));
    }
    return c;
  }
  json to_json() const {
    if (id.empty()) return nullptr;
    if (id == "blosc")
      return {{"id", "blosc"},
              {"cname", cname},
              {"clevel", level},
              {"shuffle", shuffle},
              {"blocksize", 0}};
    return {{"id", id}, {"level", level}};
  }

  std::string encode(const void* data, size_t n, size_t itemsize, const std::string& path) const {
    std::string out;
    if (id.empty()) {
      out.assign(static_cast<const char*>(data), n);
    } else if (id == "zlib") {
      uLongf len = compressBound(static_cast<uLong>(n));
      out.resize(len);
      if (compress2(reinterpret_cast<Bytef*>(out.data()), &len, static_cast<const Bytef*>(data),
                    static_cast<uLong>(n), level) != Z_OK)
        fail(path, "zlib compression failed");
      out.resize(len);
    } else if (id == "zstd") {
      out.resize(ZSTD_compressBound(n));
      const size_t len = ZSTD_compress(out.data(), out.size(), data, n, level);
      if (ZSTD_isError(len))
        fail(path, fmt::format("zstd compression failed: {}", ZSTD_getErrorName(len)));
      out.resize(len);
    } else {
      out.resize(n + BLOSC_MAX_OVERHEAD);
      const int len = blosc_compress_ctx(level, shuffle, itemsize, n, data, out.data(), out.size(),
                                         cname.c_str(), 0, 1);
      if (len <= 0) fail(path, fmt::format("blosc compression with '{}' failed", cname));
      out.resize(static_cast<size_t>(len));
    }
    return out;
  }

  void decode(const std::string& in, void* out, size_t n, const std::string& path) const {
    if (id.empty()) {
      if (in.size() != n)
        fail(path, fmt::format("chunk holds {} bytes, {} expected", in.size(), n));
      std::memcpy(out, in.data(), n);
    } else if (id == "zlib") {
      uLongf len = static_cast<uLongf>(n);
      if (uncompress(static_cast<Bytef*>(out), &len, reinterpret_cast<const Bytef*>(in.data()),
                     static_cast<uLong>(in.size())) != Z_OK ||
          len != n)
        fail(path, "corrupt zlib chunk");
    } else if (id == "zstd") {
      const size_t len = ZSTD_decompress(out, n, in.data(), in.size());
      if (ZSTD_isError(len) || len != n) fail(path, "corrupt zstd chunk");
    } else {
      size_t nbytes = 0, cbytes = 0, blocksize = 0;
      if (in.size() < BLOSC_MIN_HEADER_LENGTH) fail(path, "corrupt blosc chunk");
      blosc_cbuffer_sizes(in.data(), &nbytes, &cbytes, &blocksize);
      if (nbytes != n || cbytes != in.size()) fail(path, "corrupt blosc chunk");
      if (blosc_decompress_ctx(in.data(), out, n, 1) != static_cast<int>(n))
        fail(path, "corrupt blosc chunk");
    }
  }
};

struct Meta {
  Shape shape, chunks;
  DType dtype;
  Codec codec;
  double fill = 0;
  std::string separator = ".";
};

Meta read_meta(const std::string& root) {
  const std::string path = (fs::path(root) / ".zarray").string();
  if (!fs::exists(path)) fail(root, "not a Zarr v2 array (no .zarray)");
  json j;
  try {
    j = json::parse(read_file(path, true));
  } catch (const json::exception& e) {
    fail(path, fmt::format("malformed JSON: {}", e.what()));
  }
  try {
    Meta m;
    if (j.at("zarr_format").get<int>() != 2) fail(path, "only zarr_format 2 is supported");
    m.shape = j.at("shape").get<Shape>();
    m.chunks = j.at("chunks").get<Shape>();
    m.dtype = dtype_of_descr(j.at("dtype").get<std::string>(), path);
    if (j.value("order", "C") != "C") fail(path, "Fortran-ordered chunks are not supported");
    if (j.contains("filters") && !j["filters"].is_null() && !j["filters"].empty())
      fail(path, "filters are not supported");
    m.codec = Codec::from_json(j.at("compressor"), path);
    const json& fv = j.at("fill_value");
    if (fv.is_number())
      m.fill = fv.get<double>();
    else if (fv.is_boolean())
      m.fill = fv.get<bool>() ? 1 : 0;
    else if (fv.is_string())
      m.fill = fv == "NaN" ? NAN : fv == "Infinity" ? INFINITY : fv == "-Infinity" ? -INFINITY : 0;
    m.separator = j.value("dimension_separator", ".");
    if (m.shape.size() != m.chunks.size()) fail(path, "shape and chunks differ in length");
    for (size_t k = 0; k < m.shape.size(); ++k) {
      if (m.shape[k] < 0 || m.chunks[k] <= 0) fail(path, "invalid shape or chunks");
    }
    return m;
  } catch (const json::exception& e) {
    fail(path, fmt::format("invalid .zarray: {}", e.what()));
  }
}

std::string chunk_name(std::span<const int64_t> c, const std::string& sep) {
  if (c.empty()) return "0";
  return fmt::format("{}", fmt::join(c, sep));
}

// Reads chunk `c` of the store at `root` as an array of the block's (edge-trimmed) shape.
NDArray read_chunk(const std::string& root, const std::vector<int64_t>& c) {
  const Meta m = read_meta(root);
  const std::string path = (fs::path(root) / chunk_name(c, m.separator)).string();
  Shape full = m.chunks, edge(c.size());
  for (size_t k = 0; k < c.size(); ++k)
    edge[k] = std::min(m.chunks[k], m.shape[k] - c[k] * m.chunks[k]);
  NDArray chunk = NDArray::empty(m.dtype, full);
  const std::string bytes = read_file(path, false);
  if (bytes.empty() && !fs::exists(path)) {
    chunk = NDArray::full(m.dtype, full, m.fill);  // chunks never written hold the fill value
  } else {
    m.codec.decode(bytes, chunk.raw_mutable_data(), chunk.nbytes(), path);
  }
  NDArray v = chunk;
  for (size_t k = 0; k < c.size(); ++k) v = v.slice(static_cast<int>(k), 0, edge[k]);
  return v;
}

int64_t write_chunk(const NDArray& block, const std::string& root, const std::vector<int64_t>& c) {
  const Meta m = read_meta(root);
  // Zarr stores edge chunks at full size, padded with the fill value.
  NDArray full = NDArray::full(m.dtype, m.chunks, m.fill);
  const NDArray b = block.astype(m.dtype);
  const std::vector<int64_t> fst = contiguous_strides(m.chunks);
  visit_dtype(m.dtype, [&](auto t) {
    using T = decltype(t);
    const T* src = b.data<T>();
    T* dst = full.mutable_data<T>();
    std::vector<int64_t> idx(b.shape().size(), 0);
    for (int64_t e = 0; e < b.size(); ++e) {
      int64_t off = 0;
      for (size_t k = 0; k < idx.size(); ++k) off += idx[k] * fst[k];
      dst[off] = src[e];
      for (size_t k = idx.size(); k-- > 0;) {
        if (++idx[k] < b.shape()[k]) break;
        idx[k] = 0;
      }
    }
  });
  const std::string path = (fs::path(root) / chunk_name(c, m.separator)).string();
  const std::string bytes =
      m.codec.encode(full.raw_data(), full.nbytes(), dtype_size(m.dtype), path);
  fs::create_directories(fs::path(path).parent_path());
  write_file(path, bytes.data(), bytes.size());
  return static_cast<int64_t>(bytes.size());
}
TESSERA_REGISTER_AS("array.read-zarr", read_chunk);
TESSERA_REGISTER_AS("array.write-zarr", write_chunk);

}  // namespace

void store(const Array& a, std::function<void(std::span<const int64_t>, const NDArray&)> sink,
           const ComputeOptions& options) {
  auto fn = std::make_shared<std::function<void(std::span<const int64_t>, const NDArray&)>>(
      std::move(sink));
  auto op = make_closure_op("store",
                            [fn](const NDArray& block, const std::vector<int64_t>& c) -> int64_t {
                              (*fn)(c, block);
                              return 0;
                            });
  const std::string name =
      make_name("store", std::vector<Value>{token_of(a), Value::of(random_token())});
  compute_per_block(
      a, name,
      [op](std::span<const int64_t> c, Key key) {
        return Task::call(op, {Arg::ref(std::move(key)),
                               Arg(Value::of(std::vector<int64_t>(c.begin(), c.end())))});
      },
      options);
}

void to_zarr(const Array& a, const std::string& path, const ZarrOptions& zarr,
             const ComputeOptions& options) {
  // Zarr chunks are regular: every block but the last along each axis has the same size.
  Shape chunk(static_cast<size_t>(a.ndim()));
  for (int k = 0; k < a.ndim(); ++k) {
    const auto& c = a.chunks()[k];
    chunk[k] = std::max<int64_t>(c[0], 1);
    for (size_t i = 0; i + 1 < c.size(); ++i) {
      if (c[i] != c[0] || c.back() > c[0]) {
        throw ValueError(fmt::format(
            "to_zarr: chunks {} are not regular along axis {} (Zarr needs equal blocks but the "
            "last); rechunk first",
            chunks_str(a.chunks()), k));
      }
    }
  }
  Codec codec;
  if (zarr.compressor != "none") {
    if (zarr.compressor != "zlib" && zarr.compressor != "zstd" && zarr.compressor != "blosc") {
      throw ValueError(fmt::format("to_zarr: compressor '{}' is not one of zlib, zstd, blosc, none",
                                   zarr.compressor));
    }
    codec.id = zarr.compressor;
  }
  codec.level = zarr.level;
  codec.cname = zarr.blosc_cname;
  codec.shuffle = zarr.blosc_shuffle;
  if (zarr.dimension_separator != "." && zarr.dimension_separator != "/") {
    throw ValueError(fmt::format("to_zarr: dimension_separator must be \".\" or \"/\", not \"{}\"",
                                 zarr.dimension_separator));
  }
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) fail(path, fmt::format("cannot create: {}", ec.message()));
  // Old chunk files would survive a smaller array: remove them.
  for (const auto& entry : fs::directory_iterator(path)) {
    if (entry.path().filename() != ".zattrs") fs::remove_all(entry.path());
  }
  json meta = {{"zarr_format", 2},
               {"shape", a.shape()},
               {"chunks", chunk},
               {"dtype", numpy_descr(a.dtype())},
               {"compressor", codec.to_json()},
               {"fill_value", a.dtype() == DType::Bool ? json(false) : json(0)},
               {"order", "C"},
               {"filters", nullptr},
               {"dimension_separator", zarr.dimension_separator}};
  const std::string text = meta.dump(4);
  write_file((fs::path(path) / ".zarray").string(), text.data(), text.size());
  const std::string name = make_name("to-zarr", std::vector<Value>{token_of(a), Value::of(path)});
  compute_per_block(
      a, name,
      [path](std::span<const int64_t> c, Key key) {
        return Task::call(get_op("array.write-zarr"),
                          {Arg::ref(std::move(key)), Arg(Value::of(path)),
                           Arg(Value::of(std::vector<int64_t>(c.begin(), c.end())))});
      },
      options);
}

Array from_zarr(const std::string& path) {
  const Meta m = read_meta(path);
  Chunks chunks;
  for (size_t k = 0; k < m.shape.size(); ++k)
    chunks.push_back(regular_chunks(m.shape[k], m.chunks[k]));
  // The .zarray's bytes are part of the token: a rewritten store gets new keys.
  const std::string meta = read_file((fs::path(path) / ".zarray").string(), true);
  std::string name = make_name(
      "from-zarr", std::vector<Value>{Value::of(fs::absolute(path).string()), Value::of(meta)});
  auto layer = std::make_shared<BlockLayer>(
      name, "from-zarr", numblocks_of(chunks), std::vector<std::string>{},
      [path](std::span<const int64_t> c, std::vector<Key>&) {
        return Task::call(
            get_op("array.read-zarr"),
            {Arg(Value::of(path)), Arg(Value::of(std::vector<int64_t>(c.begin(), c.end())))});
      });
  return make_array(std::move(name), "from-zarr", m.dtype, m.shape, std::move(chunks),
                    std::move(layer), {});
}

Array from_zarr(const std::string& path, const ChunkSpec& chunks) {
  Array a = from_zarr(path);
  return a.rechunk(chunks);
}

}  // namespace tessera::array
