// libFuzzer target: the transport's message decoder and the typed messages every
// connection starts with. The input is split into parts at each "\xff\xfe" pair (the
// transport's multipart boundaries), then decoded as a peer's message would be.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "comm/message.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace comm = tessera::comm;
  const auto* b = reinterpret_cast<const std::byte*>(data);
  std::vector<std::span<const std::byte>> parts;
  size_t start = 0;
  for (size_t i = 0; i + 1 < size; ++i) {
    if (data[i] == 0xff && data[i + 1] == 0xfe) {
      parts.emplace_back(b + start, i - start);
      start = i + 2;
      ++i;
    }
  }
  parts.emplace_back(b + start, size - start);
  try {
    const comm::Envelope env =
        comm::decode_parts(parts, nullptr, {.max_header_bytes = 1 << 16, .max_frame_bytes = 1 << 16});
    if (env.op == comm::Handshake::kOp) (void)comm::unpack<comm::Handshake>(env);
    if (env.op == comm::HandshakeReply::kOp) (void)comm::unpack<comm::HandshakeReply>(env);
  } catch (const comm::ProtocolError&) {
  }
  return 0;
}
