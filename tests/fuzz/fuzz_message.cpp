// libFuzzer target: the transport's message decoder and every typed message of the
// distributed protocol. The input is split into parts at each "\xff\xfe" pair (the
// transport's multipart boundaries), then decoded as a peer's message would be.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "comm/message.hpp"
#include "distributed/protocol.hpp"

namespace comm = tessera::comm;

namespace {
// Decodes a message as the type its op names.
void decode_one(const comm::Envelope& env) {
  namespace pr = tessera::distributed::protocol;
  const std::string& op = env.op;
  if (op == comm::Handshake::kOp) (void)comm::unpack<comm::Handshake>(env);
  if (op == comm::HandshakeReply::kOp) (void)comm::unpack<comm::HandshakeReply>(env);
  if (op == pr::UpdateGraph::kOp) (void)comm::unpack<pr::UpdateGraph>(env);
  if (op == pr::ReleaseKeys::kOp) (void)comm::unpack<pr::ReleaseKeys>(env);
  if (op == pr::KeyInMemory::kOp) (void)comm::unpack<pr::KeyInMemory>(env);
  if (op == pr::KeyErred::kOp) (void)comm::unpack<pr::KeyErred>(env);
  if (op == pr::KeyLost::kOp) (void)comm::unpack<pr::KeyLost>(env);
  if (op == pr::GraphRefused::kOp) (void)comm::unpack<pr::GraphRefused>(env);
  if (op == pr::ComputeTask::kOp) (void)comm::unpack<pr::ComputeTask>(env);
  if (op == pr::FreeKeys::kOp) (void)comm::unpack<pr::FreeKeys>(env);
  if (op == pr::WorkerRemoved::kOp) (void)comm::unpack<pr::WorkerRemoved>(env);
  if (op == pr::TaskFinished::kOp) (void)comm::unpack<pr::TaskFinished>(env);
  if (op == pr::TaskErred::kOp) (void)comm::unpack<pr::TaskErred>(env);
  if (op == pr::MissingData::kOp) (void)comm::unpack<pr::MissingData>(env);
  if (op == pr::Heartbeat::kOp) (void)comm::unpack<pr::Heartbeat>(env);
  if (op == pr::GetData::kOp) (void)comm::unpack<pr::GetData>(env);
  if (op == pr::Data::kOp) (void)comm::unpack<pr::Data>(env);
  if (op == pr::FireAndForget::kOp) (void)comm::unpack<pr::FireAndForget>(env);
  if (op == pr::CloseClient::kOp) (void)comm::unpack<pr::CloseClient>(env);
  if (op == pr::StealRequest::kOp) (void)comm::unpack<pr::StealRequest>(env);
  if (op == pr::StealResponse::kOp) (void)comm::unpack<pr::StealResponse>(env);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
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
    const comm::Limits limits{.max_header_bytes = 1 << 16, .max_frame_bytes = 1 << 16};
    const comm::Envelope env = comm::decode_parts(parts, nullptr, limits);
    for (const comm::Envelope& one : comm::unpack_batch(env, limits)) decode_one(one);
  } catch (const comm::ProtocolError&) {
  }
  return 0;
}
