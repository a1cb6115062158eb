// Writes a seed corpus for the fuzz targets: one well-formed input per message of the
// distributed protocol (and a batch of them) for fuzz_message, and serialized graphs and
// values for fuzz_graph, so that the fuzzers start from inputs that reach deep into every
// decoder instead of finding the formats byte by byte. `make fuzz` runs it first; the test
// suite runs it too, so the seeds follow the protocol:
//
//   fuzz_seeds CORPUS_DIR     writes CORPUS_DIR/fuzz_message/* and CORPUS_DIR/fuzz_graph/*
//
// Every seed is decoded back the way the targets read it; it exits 1 if one does not decode
// (or names an op no message type has).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "comm/message.hpp"
#include "distributed/protocol.hpp"
#include "fuzz_decode.hpp"
#include "tessera/core.hpp"

namespace comm = tessera::comm;
namespace pr = tessera::distributed::protocol;
namespace fs = std::filesystem;
using tessera::Key;
using tessera::Value;

namespace {

int64_t seed_inc(int64_t x) {
  return x + 1;
}
TESSERA_REGISTER(seed_inc);

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_seeds: %s\n", what.c_str());
  std::exit(1);
}

void write_file(const fs::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) fail("cannot write " + path.string());
}

// An envelope as fuzz_message reads it: the head part, then each frame, separated by the
// "\xff\xfe" pairs it splits at.
std::vector<std::byte> as_parts(const comm::Envelope& env) {
  std::vector<std::byte> out = comm::encode_head(env);
  for (const tessera::Frame& f : env.body.frames) {
    out.push_back(std::byte{0xff});
    out.push_back(std::byte{0xfe});
    out.insert(out.end(), f.bytes.begin(), f.bytes.end());
  }
  return out;
}

pr::Payload payload_of(const std::string& s) {
  auto owner = std::make_shared<std::string>(s);
  return {owner, std::as_bytes(std::span(owner->data(), owner->size()))};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds CORPUS_DIR\n");
    return 2;
  }
  const fs::path root = argv[1];
  fs::create_directories(root / "fuzz_message");
  fs::create_directories(root / "fuzz_graph");

  tessera::Graph g;
  g.add(Key("a", {0}), tessera::Task::literal(Value::of(int64_t{41})));
  g.add(Key("b", {0}), tessera::Task::call("seed_inc", {tessera::Arg::ref(Key("a", {0}))}));
  const Key wanted("b", {0});
  const Key k("x", {1, 2});
  const Value small = Value::of(int64_t{7});
  const Value vec = Value::of(std::vector<double>{1.0, 2.0, 3.0});

  std::vector<std::pair<std::string, comm::Envelope>> messages = {
      {"handshake", comm::pack(comm::Handshake{.role = "worker",
                                               .name = "w",
                                               .nthreads = 2,
                                               .address = "tcp://127.0.0.1:9000",
                                               .memory_limit = 1 << 30})},
      {"handshake-reply", comm::pack(comm::HandshakeReply{true, 3, ""})},
      {"update-graph", comm::pack(pr::to_update_graph(g, std::span<const Key>(&wanted, 1)))},
      {"release-keys", comm::pack(pr::ReleaseKeys{{k, wanted}})},
      {"fire-and-forget", comm::pack(pr::FireAndForget{{k}})},
      {"close-client", comm::pack(pr::CloseClient{})},
      {"key-in-memory", comm::pack(pr::KeyInMemory{k, 8, {"tcp://127.0.0.1:9000"}, small})},
      {"key-erred", comm::pack(pr::KeyErred{k, "ValueError: boom", k})},
      {"key-lost", comm::pack(pr::KeyLost{k})},
      {"graph-refused", comm::pack(pr::GraphRefused{"cycle", {k}})},
      {"compute-task",
       comm::pack(pr::ComputeTask{k, 5, payload_of("task"), {{wanted, {"tcp://127.0.0.1:9001"}}}})},
      {"free-keys", comm::pack(pr::FreeKeys{{k}})},
      {"worker-removed", comm::pack(pr::WorkerRemoved{"silent for over 10000 ms"})},
      {"task-finished", comm::pack(pr::TaskFinished{k, 8, 0.001, small})},
      {"steal-request", comm::pack(pr::StealRequest{k})},
      {"steal-response", comm::pack(pr::StealResponse{k, true})},
      {"task-erred", comm::pack(pr::TaskErred{k, "boom"})},
      {"missing-data", comm::pack(pr::MissingData{k, wanted, "tcp://127.0.0.1:9001"})},
      {"heartbeat", comm::pack(pr::Heartbeat{1 << 20, false})},
      {"get-data", comm::pack(pr::GetData{{k, wanted}})},
      {"data", comm::pack(pr::Data{{{k, vec}, {wanted, small}}, {Key("gone")}})},
      {"identity", comm::pack(pr::Identity{4})},
      {"unregister", comm::pack(pr::Unregister{"stopped"})},
      {"retry", comm::pack(pr::Retry{5, {k, wanted}})},
      {"retried", comm::pack(pr::Retried{5})},
      {"key-retried", comm::pack(pr::KeyRetried{k})},
      {"scheduler-info",
       comm::pack(pr::SchedulerInfo{4,
                                    "tcp://127.0.0.1:8786",
                                    {{"tcp://127.0.0.1:9000", "w", 2, 1 << 30, 4096, false},
                                     {"tcp://127.0.0.1:9001", "v", 1, 0, 0, true}}})},
  };
  // Written, then read back as fuzz_message reads its input.
  const auto message_seed = [&](const std::string& name, const comm::Envelope& env,
                                size_t messages_in_it) {
    const std::vector<std::byte> bytes = as_parts(env);
    write_file(root / "fuzz_message" / name, bytes);
    size_t unknown = 0, n = 0;
    try {
      n = tessera::fuzz::decode_input(reinterpret_cast<const uint8_t*>(bytes.data()),
                                      bytes.size(), &unknown);
    } catch (const std::exception& e) {
      fail("seed '" + name + "' does not decode: " + e.what());
    }
    if (n != messages_in_it || unknown != 0)
      fail("seed '" + name + "' decodes to " + std::to_string(n) + " messages, " +
           std::to_string(unknown) + " of unknown type");
  };
  std::vector<comm::Envelope> batch;
  for (const auto& [name, env] : messages) {
    if (name != env.op) fail("seed '" + name + "' holds a '" + env.op + "'");
    message_seed(name, env, 1);
    batch.push_back(env);
  }
  message_seed("batch", comm::pack_batch(std::move(batch)), messages.size());

  // fuzz_graph decodes inputs of even length as graphs and odd ones as values.
  auto parity = [](std::vector<std::byte> b, bool even) {
    if ((b.size() % 2 == 0) != even) b.push_back(std::byte{0});  // trailing: one more path
    return b;
  };
  const auto graph = tessera::to_bytes(tessera::encode_graph(g));
  try {
    const tessera::Graph back = tessera::decode_graph(tessera::from_bytes(graph));
    if (back.size() != g.size()) fail("the graph seed decodes to another graph");
    if (tessera::decode_value(tessera::from_bytes(tessera::to_bytes(tessera::encode_value(vec))))
            .get<std::vector<double>>() != vec.get<std::vector<double>>())
      fail("the vector seed decodes to another vector");
  } catch (const tessera::Error& e) {
    fail(std::string("a graph or value seed does not decode: ") + e.what());
  }
  write_file(root / "fuzz_graph" / "graph", graph);
  write_file(root / "fuzz_graph" / "graph-even", parity(graph, true));
  for (const auto& [name, v] : {std::pair{"int64", small}, std::pair{"vector", vec}}) {
    const auto bytes = tessera::to_bytes(tessera::encode_value(v));
    write_file(root / "fuzz_graph" / name, bytes);
    write_file(root / "fuzz_graph" / (std::string(name) + "-odd"), parity(bytes, false));
  }
  std::printf("fuzz_seeds: wrote %zu message seeds and 6 graph/value seeds to %s\n",
              messages.size() + 1, root.c_str());
  return 0;
}
