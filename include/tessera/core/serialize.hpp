// File: tessera/core/serialize.hpp
//
// Values and whole graphs as messages: a msgpack header plus raw frames (large buffers are
// referenced, never copied through the encoder). Decoding is typed and bounded: only
// registered types and registered ops are reconstructed, sizes are checked against the
// bytes actually present, and malformed input raises SerializationError.
//
//   tessera::Message m = tessera::encode_graph(graph);      // SerializationError for closures
//   std::vector<std::byte> bytes = tessera::to_bytes(m);     // one contiguous buffer
//   tessera::Graph g2 = tessera::decode_graph(tessera::from_bytes(bytes));
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "tessera/core/codec.hpp"
#include "tessera/core/graph.hpp"

namespace tessera {

// A header plus frames.
struct Message {
  std::vector<std::byte> header;
  std::vector<Frame> frames;
  // Header and frame bytes together.
  size_t nbytes() const noexcept;
};

// Bounds applied when decoding bytes that may come from anywhere.
struct DecodeLimits {
  size_t max_header_bytes = size_t{256} << 20;
  size_t max_frames = size_t{1} << 24;
  size_t max_depth = 64;  // nesting of values, lists and tasks
};

// Encodes one value (SerializationError if its type has no codec).
Message encode_value(const Value& v);
Value decode_value(const Message& m, const DecodeLimits& limits = {});

// Encodes a graph: keys, op names, arguments. SerializationError naming the task if a task
// calls a closure or holds a value without a codec.
Message encode_graph(const Graph& graph);
// Decodes a graph; OpError for an op this process has not registered, naming op and key.
Graph decode_graph(const Message& m, const DecodeLimits& limits = {});

// One contiguous buffer: magic, version, sizes, header, then each frame 8-byte aligned.
std::vector<std::byte> to_bytes(const Message& m);
// Parses to_bytes() output; the frames point into `bytes` (kept alive by them).
Message from_bytes(std::shared_ptr<const std::vector<std::byte>> bytes,
                   const DecodeLimits& limits = {});
// Copies `bytes` first.
Message from_bytes(std::span<const std::byte> bytes, const DecodeLimits& limits = {});

}  // namespace tessera
