// NumPy's .npy format (version 1.0 written; 1.0 to 3.0 read): whole arrays, chunked reads
// (each block reads its own byte ranges) and block-by-block writes.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera::array {

namespace {

struct Header {
  DType dtype;
  Shape shape;
  int64_t data_offset;
};

// An open file descriptor, closed on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] void io_fail(const std::string& path, const std::string& what) {
  throw IOError(fmt::format("{}: {}", path, what));
}

void read_exact(int fd, void* buf, size_t n, int64_t off, const std::string& path) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) io_fail(path, std::strerror(errno));
    if (r == 0) io_fail(path, "file is truncated (fewer bytes than its header announces)");
    p += r;
    n -= static_cast<size_t>(r);
    off += r;
  }
}

void write_exact(int fd, const void* buf, size_t n, int64_t off, const std::string& path) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t r = ::pwrite(fd, p, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) io_fail(path, std::strerror(errno));
    p += r;
    n -= static_cast<size_t>(r);
    off += r;
  }
}

int open_or_fail(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) io_fail(path, fmt::format("cannot open: {}", std::strerror(errno)));
  return fd;
}

// The value after 'key': in a .npy header dict.
std::string field(const std::string& dict, const std::string& key, const std::string& path) {
  const size_t k = dict.find("'" + key + "'");
  if (k == std::string::npos)
    io_fail(path, fmt::format("not a .npy header: no '{}' in {}", key, dict));
  size_t p = dict.find(':', k);
  if (p == std::string::npos) io_fail(path, "malformed .npy header");
  ++p;
  while (p < dict.size() && dict[p] == ' ') ++p;
  size_t e = p;
  if (p < dict.size() && dict[p] == '(') {
    e = dict.find(')', p);
    if (e == std::string::npos) io_fail(path, "malformed .npy header shape");
    return dict.substr(p, e - p + 1);
  }
  if (p < dict.size() && dict[p] == '\'') {
    e = dict.find('\'', p + 1);
    if (e == std::string::npos) io_fail(path, "malformed .npy header");
    return dict.substr(p + 1, e - p - 1);
  }
  while (e < dict.size() && dict[e] != ',' && dict[e] != '}') ++e;
  return dict.substr(p, e - p);
}

Header read_header(int fd, const std::string& path) {
  char pre[12];
  struct stat st {};
  if (::fstat(fd, &st) != 0) io_fail(path, std::strerror(errno));
  if (st.st_size < 10) io_fail(path, "not a .npy file (too short)");
  read_exact(fd, pre, 10, 0, path);
  if (std::memcmp(pre, "\x93NUMPY", 6) != 0) io_fail(path, "not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(pre[6]);
  int64_t len, start;
  if (major == 1) {
    len = static_cast<unsigned char>(pre[8]) | (static_cast<unsigned char>(pre[9]) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    read_exact(fd, pre + 10, 2, 10, path);
    len = static_cast<int64_t>(static_cast<unsigned char>(pre[8]) |
                               (static_cast<unsigned char>(pre[9]) << 8) |
                               (static_cast<unsigned char>(pre[10]) << 16) |
                               (static_cast<uint32_t>(static_cast<unsigned char>(pre[11])) << 24));
    start = 12;
  } else {
    io_fail(path, fmt::format("unsupported .npy format version {}", major));
  }
  if (start + len > st.st_size || len > (1 << 20)) io_fail(path, "file is truncated (header)");
  std::string dict(static_cast<size_t>(len), '\0');
  read_exact(fd, dict.data(), dict.size(), start, path);
  Header h;
  const std::string descr = field(dict, "descr", path);
  h.dtype = dtype_of_descr(descr, path);
  if (field(dict, "fortran_order", path).find("True") != std::string::npos) {
    io_fail(path, "Fortran-ordered .npy files are not supported (save with C order)");
  }
  const std::string shape = field(dict, "shape", path);
  h.shape.clear();
  size_t p = 1;
  while (p < shape.size()) {
    while (p < shape.size() && (shape[p] == ' ' || shape[p] == ',')) ++p;
    if (p >= shape.size() || shape[p] == ')') break;
    char* end = nullptr;
    const long long v = std::strtoll(shape.c_str() + p, &end, 10);
    if (end == shape.c_str() + p || v < 0) io_fail(path, fmt::format("malformed shape {}", shape));
    h.shape.push_back(v);
    p = static_cast<size_t>(end - shape.c_str());
  }
  h.data_offset = start + len;
  int64_t n = 1;
  for (int64_t s : h.shape) n *= s;
  if (h.data_offset + n * static_cast<int64_t>(dtype_size(h.dtype)) > st.st_size) {
    io_fail(path, fmt::format("file is truncated: shape {} needs {} bytes of data, it has {}",
                              shape_str(h.shape), n * static_cast<int64_t>(dtype_size(h.dtype)),
                              st.st_size - h.data_offset));
  }
  return h;
}

std::string header_bytes(DType t, const Shape& shape) {
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                 numpy_descr(t), shape_str(shape));
  // Pad so the data starts at a multiple of 64 bytes, ending with a newline.
  const size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  return out + dict;
}

// Calls f(byte offset in a C-order file of `shape`, element offset in the block) for every
// row of the region [lo, lo + extent) (rows along the last axis).
template <class F>
void for_each_run(const Shape& shape, const std::vector<int64_t>& lo, const Shape& extent,
                  size_t item, F f) {
  const int nd = static_cast<int>(shape.size());
  if (nd == 0) {
    f(int64_t{0}, int64_t{0}, static_cast<int64_t>(item));
    return;
  }
  for (int64_t e : extent) {
    if (e == 0) return;
  }
  const std::vector<int64_t> st = contiguous_strides(shape);
  std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
  const int64_t run = extent[nd - 1];
  int64_t block_off = 0;
  while (true) {
    int64_t off = 0;
    for (int k = 0; k < nd; ++k) off += (lo[k] + idx[k]) * st[k];
    f(off * static_cast<int64_t>(item), block_off, run * static_cast<int64_t>(item));
    block_off += run;
    int k = nd - 2;
    for (; k >= 0; --k) {
      if (++idx[k] < extent[k]) break;
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

NDArray npy_block(const std::string& path, const std::vector<int64_t>& lo,
                  const std::vector<int64_t>& extent) {
  Fd f{open_or_fail(path, O_RDONLY)};
  const Header h = read_header(f.fd, path);
  if (lo.size() != h.shape.size()) io_fail(path, "changed since the array was opened");
  NDArray out = NDArray::empty(h.dtype, extent);
  auto* dst = static_cast<char*>(out.raw_mutable_data());
  const size_t item = dtype_size(h.dtype);
  for_each_run(h.shape, lo, extent, item, [&](int64_t file_off, int64_t block_off, int64_t bytes) {
    read_exact(f.fd, dst + block_off * static_cast<int64_t>(item), static_cast<size_t>(bytes),
               h.data_offset + file_off, path);
  });
  return out;
}
TESSERA_REGISTER_AS("array.read-npy", npy_block);

int64_t store_npy_block(const NDArray& block, const std::string& path, int64_t data_offset,
                        const std::vector<int64_t>& shape, const std::vector<int64_t>& lo) {
  Fd f{open_or_fail(path, O_WRONLY)};
  const NDArray c = block.contiguous();
  const auto* src = static_cast<const char*>(c.raw_data());
  const size_t item = dtype_size(c.dtype());
  for_each_run(shape, lo, c.shape(), item, [&](int64_t file_off, int64_t block_off, int64_t bytes) {
    write_exact(f.fd, src + block_off * static_cast<int64_t>(item), static_cast<size_t>(bytes),
                data_offset + file_off, path);
  });
  return static_cast<int64_t>(c.nbytes());
}
TESSERA_REGISTER_AS("array.store-npy", store_npy_block);

}  // namespace

void write_npy(const NDArray& a, const std::string& path) {
  const std::string h = header_bytes(a.dtype(), a.shape());
  Fd f{open_or_fail(path, O_WRONLY | O_CREAT | O_TRUNC)};
  write_exact(f.fd, h.data(), h.size(), 0, path);
  const NDArray c = a.contiguous();
  write_exact(f.fd, c.raw_data(), c.nbytes(), static_cast<int64_t>(h.size()), path);
}

NDArray read_npy(const std::string& path) {
  Fd f{open_or_fail(path, O_RDONLY)};
  const Header h = read_header(f.fd, path);
  NDArray out = NDArray::empty(h.dtype, h.shape);
  read_exact(f.fd, out.raw_mutable_data(), out.nbytes(), h.data_offset, path);
  return out;
}

Array from_npy(const std::string& path, const ChunkSpec& chunks) {
  Header h;
  {
    Fd f{open_or_fail(path, O_RDONLY)};
    h = read_header(f.fd, path);
  }
  Chunks ch = chunks.resolve(h.shape, h.dtype);
  struct stat st {};
  ::stat(path.c_str(), &st);
  // The file's identity and modification time are part of the token, as dask does.
  std::string name = make_name(
      "from-npy",
      std::vector<Value>{Value::of(path), Value::of(static_cast<int64_t>(st.st_mtim.tv_sec)),
                         Value::of(static_cast<int64_t>(st.st_mtim.tv_nsec)),
                         Value::of(static_cast<int64_t>(st.st_size)), Value::of(chunks_str(ch))});
  const auto offs = offsets_of(ch);
  const Chunks cc = ch;
  auto layer = std::make_shared<BlockLayer>(
      name, "from-npy", numblocks_of(ch), std::vector<std::string>{},
      [path, offs, cc](std::span<const int64_t> c, std::vector<Key>&) {
        std::vector<int64_t> lo(c.size());
        for (size_t k = 0; k < c.size(); ++k) lo[k] = offs[k][c[k]];
        return Task::call(get_op("array.read-npy"), {Arg(Value::of(path)), Arg(Value::of(lo)),
                                                     Arg(Value::of(block_shape(cc, c)))});
      });
  return make_array(std::move(name), "from-npy", h.dtype, h.shape, std::move(ch), std::move(layer),
                    {});
}

void to_npy(const Array& a, const std::string& path, const ComputeOptions& options) {
  const std::string h = header_bytes(a.dtype(), a.shape());
  {
    Fd f{open_or_fail(path, O_WRONLY | O_CREAT | O_TRUNC)};
    write_exact(f.fd, h.data(), h.size(), 0, path);
    if (::ftruncate(f.fd, static_cast<off_t>(h.size()) + a.nbytes()) != 0)
      io_fail(path, std::strerror(errno));
  }
  // One store task per block; each writes its rows and returns the bytes written.
  const std::string name = make_name("store-npy", std::vector<Value>{token_of(a), Value::of(path)});
  const auto offs = offsets_of(a.chunks());
  const auto data_offset = static_cast<int64_t>(h.size());
  const Shape shape = a.shape();
  compute_per_block(
      a, name,
      [=](std::span<const int64_t> c, Key key) {
        std::vector<int64_t> lo(c.size());
        for (size_t k = 0; k < c.size(); ++k) lo[k] = offs[k][c[k]];
        return Task::call(get_op("array.store-npy"),
                          {Arg::ref(std::move(key)), Arg(Value::of(path)),
                           Arg(Value::of(data_offset)), Arg(Value::of(shape)), Arg(Value::of(lo))});
      },
      options);
}

}  // namespace tessera::array
