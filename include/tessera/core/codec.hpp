// File: tessera/core/codec.hpp
//
// How values cross process boundaries: a small msgpack header plus raw byte frames, so
// large buffers are never copied through an encoder. A type becomes shippable by
// specializing tessera::Codec<T>:
//
//   struct Point { double x, y; };
//   template <> struct tessera::Codec<Point> {
//     static void encode(const Point& p, tessera::Encoder& e) { e.write_double(p.x);
//     e.write_double(p.y); } static Point decode(tessera::Decoder& d) { double x = d.read_double();
//     return {x, d.read_double()}; }
//   };
//   TESSERA_REGISTER_TYPE(Point);   // decodable by name in every process that links this
//
// Codecs write a sequence of items; decoders read the same sequence back. Decoders check
// every item's type and every length, and throw SerializationError on malformed bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

class Value;

// A run of raw bytes carried beside the header, with whatever keeps it alive.
struct Frame {
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> owner;
};

// Writes the items of one value (or one message) as msgpack, and collects frames.
class Encoder {
 public:
  Encoder();
  ~Encoder();
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  // Item writers, one msgpack item each.
  void write_nil();
  void write_bool(bool v);
  void write_int(int64_t v);
  void write_uint(uint64_t v);
  void write_double(double v);
  void write_string(std::string_view v);
  // Small binary data, copied into the header.
  void write_bytes(std::span<const std::byte> v);
  // Starts an array of n items / a map of n key-value pairs; the next items fill it.
  void begin_array(size_t n);
  void begin_map(size_t n);
  // Large binary data, sent as its own frame without a copy. Inside a codec the bytes may
  // point into the object being encoded: the value is kept alive with the frame. Elsewhere
  // pass the `owner` that keeps the bytes alive.
  void write_frame(std::span<const std::byte> bytes, std::shared_ptr<const void> owner = nullptr);
  // A nested value of any registered type (its type name, header and frames).
  void write_value(const Value& v);

  // The finished header (one msgpack array of the items written) and the frames.
  std::vector<std::byte> finish_header();
  std::vector<Frame>& frames();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Reads back the items an Encoder wrote. Every read checks the item's type.
class Decoder {
 public:
  // Reads `header` (as produced by Encoder::finish_header) with `frames` beside it; arrays
  // and maps may nest `max_nesting` deep.
  Decoder(std::span<const std::byte> header, std::span<const Frame> frames,
          size_t max_nesting = 64);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  bool at_end() const;
  bool next_is_nil() const;
  void read_nil();
  bool read_bool();
  int64_t read_int();
  uint64_t read_uint();
  double read_double();
  std::string read_string();
  std::vector<std::byte> read_bytes();
  // Returns the number of items of the array / pairs of the map that follow.
  size_t read_array();
  size_t read_map();
  // A frame written with write_frame; the bytes are not copied.
  Frame read_frame();
  // A nested value written with write_value.
  Value read_value();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Specialize for a type to make it serializable: static encode(const T&, Encoder&),
// static T decode(Decoder&), and optionally static size_t nbytes(const T&) (memory
// estimate) and static void hash(const T&, Hasher&) (for tokenize; the encoded bytes are
// hashed otherwise).
template <class T>
struct Codec;

}  // namespace tessera
