// The decoding fuzz_message exercises, shared with fuzz_seeds (which checks that every seed
// decodes): an input is split into parts at each "\xff\xfe" pair (the transport's multipart
// boundaries), read as a peer's envelope, unbatched, and each message decoded as the type its
// op names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "comm/message.hpp"
#include "distributed/protocol.hpp"

namespace tessera::fuzz {

// Decodes `env` as M if its op is M's.
template <class M>
bool decode_as(const comm::Envelope& env) {
  if (env.op != M::kOp) return false;
  (void)comm::unpack<M>(env);
  return true;
}

// Decodes one message as the type its op names; false if no type has that op.
inline bool decode_message(const comm::Envelope& env) {
  namespace pr = tessera::distributed::protocol;
  return decode_as<comm::Handshake>(env) || decode_as<comm::HandshakeReply>(env) ||
         decode_as<pr::UpdateGraph>(env) || decode_as<pr::ReleaseKeys>(env) ||
         decode_as<pr::KeyInMemory>(env) || decode_as<pr::KeyErred>(env) ||
         decode_as<pr::KeyLost>(env) || decode_as<pr::GraphRefused>(env) ||
         decode_as<pr::ComputeTask>(env) || decode_as<pr::FreeKeys>(env) ||
         decode_as<pr::WorkerRemoved>(env) || decode_as<pr::TaskFinished>(env) ||
         decode_as<pr::TaskErred>(env) || decode_as<pr::MissingData>(env) ||
         decode_as<pr::Heartbeat>(env) || decode_as<pr::GetData>(env) || decode_as<pr::Data>(env) ||
         decode_as<pr::FireAndForget>(env) || decode_as<pr::CloseClient>(env) ||
         decode_as<pr::StealRequest>(env) || decode_as<pr::StealResponse>(env) ||
         decode_as<pr::Identity>(env) || decode_as<pr::SchedulerInfo>(env) ||
         decode_as<pr::Unregister>(env) || decode_as<pr::Retry>(env) ||
         decode_as<pr::Retried>(env) || decode_as<pr::KeyRetried>(env);
}

// Decodes an input as fuzz_message does; the messages it held, each decoded (ProtocolError
// if malformed). `unknown` counts those whose op names no message type.
inline size_t decode_input(const uint8_t* data, size_t size, size_t* unknown = nullptr) {
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
  const comm::Limits limits{.max_header_bytes = 1 << 16, .max_frame_bytes = 1 << 16};
  const comm::Envelope env = comm::decode_parts(parts, nullptr, limits);
  size_t n = 0;
  for (const comm::Envelope& one : comm::unpack_batch(env, limits)) {
    if (!decode_message(one) && unknown) ++*unknown;
    ++n;
  }
  return n;
}

}  // namespace tessera::fuzz
