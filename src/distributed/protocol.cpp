#include "distributed/protocol.hpp"

#include <fmt/format.h>

#include <limits>

#include "tessera/core/order.hpp"
#include "tessera/core/serialize.hpp"

namespace tessera::distributed::protocol {

using comm::ProtocolError;
using comm::read_key;
using comm::read_keys;
using comm::write_key;
using comm::write_keys;

namespace {

// A task's payload: up to kInlinePayload bytes in the header (0, then the bytes: a small
// copy), beyond it as a frame of its own (1, then the frame: no copy). A batch of tiny tasks
// is then one ZeroMQ part instead of one per task; every part costs an allocation and a
// queue entry on both sides' I/O threads.
constexpr size_t kInlinePayload = 1024;

void write_payload(Encoder& e, const Payload& p) {
  if (p.bytes.size() <= kInlinePayload) {
    e.write_uint(0);
    e.write_bytes(p.bytes);
  } else {
    e.write_uint(1);
    e.write_frame(p.bytes, p.owner);
  }
}
Payload read_payload(Decoder& d) {
  const uint64_t kind = d.read_uint();
  if (kind == 0) {
    auto bytes = std::make_shared<const std::vector<std::byte>>(d.read_bytes());
    const std::span<const std::byte> view(*bytes);
    return Payload{std::move(bytes), view};
  }
  if (kind != 1) throw ProtocolError("a payload is 0 and its bytes, or 1 and a frame");
  Frame f = d.read_frame();
  return Payload{std::move(f.owner), f.bytes};
}

void write_strings(Encoder& e, const std::vector<std::string>& v) {
  e.begin_array(v.size());
  for (const auto& s : v) e.write_string(s);
}
std::vector<std::string> read_strings(Decoder& d, size_t max) {
  const size_t n = d.read_array();
  if (n > max) throw ProtocolError(fmt::format("{} entries, more than the limit of {}", n, max));
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(d.read_string());
  return out;
}

// An optional value: an array of none or one.
void write_optional_value(Encoder& e, const std::optional<Value>& v) {
  e.begin_array(v ? 1 : 0);
  if (v) e.write_value(*v);
}
std::optional<Value> read_optional_value(Decoder& d) {
  const size_t n = d.read_array();
  if (n > 1) throw ProtocolError(fmt::format("an optional value holds {} values, not 0 or 1", n));
  if (n == 0) return std::nullopt;
  return d.read_value();
}

uint64_t read_count(Decoder& d, size_t max, const char* what) {
  const size_t n = d.read_array();
  if (n > max) throw ProtocolError(fmt::format("{} {}, more than the limit of {}", n, what, max));
  return n;
}

}  // namespace

// The tasks' payloads travel as one frame (a frame per task would hit the frame limit on
// big graphs), each task giving its payload's length.
void UpdateGraph::encode(Encoder& e) const {
  e.begin_array(tasks.size());
  size_t total = 0;
  bool contiguous = true;  // payloads side by side in one buffer (as to_update_graph makes them)
  for (const GraphTask& t : tasks) {
    e.begin_array(4);
    write_key(e, t.key);
    write_keys(e, t.dependencies);
    e.write_uint(t.priority);
    e.write_uint(t.payload.bytes.size());
    if (total > 0 && (t.payload.owner != tasks.front().payload.owner ||
                      t.payload.bytes.data() != tasks.front().payload.bytes.data() + total)) {
      contiguous = false;
    }
    total += t.payload.bytes.size();
  }
  if (tasks.empty() || total == 0) {
    e.write_frame({});
  } else if (contiguous) {
    e.write_frame(std::span(tasks.front().payload.bytes.data(), total),
                  tasks.front().payload.owner);
  } else {
    auto all = std::make_shared<std::vector<std::byte>>();
    all->reserve(total);
    for (const GraphTask& t : tasks)
      all->insert(all->end(), t.payload.bytes.begin(), t.payload.bytes.end());
    e.write_frame(*all, all);
  }
  write_keys(e, wanted);
  write_keys(e, scattered);
  e.write_int(user_priority);
  e.write_uint(retries);
}

UpdateGraph UpdateGraph::decode(Decoder& d) {
  UpdateGraph g;
  const uint64_t n = read_count(d, kMaxKeys, "tasks");
  g.tasks.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (d.read_array() != 4)
      throw ProtocolError("a task is [key, dependencies, priority, payload]");
    GraphTask t;
    t.key = read_key(d);
    t.dependencies = read_keys(d, kMaxKeys);
    t.priority = d.read_uint();
    // The length for now; the payload once the frame is read.
    t.payload.bytes =
        std::span<const std::byte>(static_cast<const std::byte*>(nullptr), d.read_uint());
    g.tasks.push_back(std::move(t));
  }
  const Frame all = d.read_frame();
  size_t at = 0;
  for (GraphTask& t : g.tasks) {
    const size_t len = t.payload.bytes.size();
    if (len > all.bytes.size() - at)
      throw ProtocolError("the tasks' payload lengths exceed the payload frame");
    t.payload = Payload{all.owner, all.bytes.subspan(at, len)};
    at += len;
  }
  if (at != all.bytes.size())
    throw ProtocolError("the payload frame is longer than the tasks' payloads");
  g.wanted = read_keys(d, kMaxKeys);
  g.scattered = read_keys(d, kMaxKeys);
  const int64_t p = d.read_int();
  if (p < std::numeric_limits<int32_t>::min() || p > std::numeric_limits<int32_t>::max())
    throw ProtocolError(fmt::format("update-graph: priority {} is out of range", p));
  g.user_priority = static_cast<int32_t>(p);
  const uint64_t r = d.read_uint();
  if (r > kMaxRetries)
    throw ProtocolError(fmt::format("update-graph: {} retries, more than {}", r, kMaxRetries));
  g.retries = static_cast<uint32_t>(r);
  return g;
}

UpdateGraph to_update_graph(const Graph& graph, std::span<const Key> wanted,
                            const std::function<bool(const Key&)>& held) {
  const std::vector<uint32_t> priority = order(graph, wanted);
  const auto& entries = graph.entries();
  UpdateGraph out;
  out.wanted.assign(wanted.begin(), wanted.end());
  out.tasks.reserve(entries.size());
  // Every payload in one buffer, side by side: the message sends it as one frame.
  auto arena = std::make_shared<std::vector<std::byte>>();
  std::vector<size_t> ends;
  ends.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    if (held && held(entries[i].key)) continue;
    Graph one;
    one.add(entries[i].key, entries[i].task);
    const std::vector<std::byte> bytes = to_bytes(encode_graph(one));
    arena->insert(arena->end(), bytes.begin(), bytes.end());
    ends.push_back(arena->size());
    out.tasks.push_back(
        GraphTask{entries[i].key, entries[i].task->dependencies(), priority[i], {}});
  }
  size_t begin = 0;
  for (size_t i = 0; i < out.tasks.size(); ++i) {
    out.tasks[i].payload =
        Payload{arena, std::span<const std::byte>(arena->data() + begin, ends[i] - begin)};
    begin = ends[i];
  }
  return out;
}

void ReleaseKeys::encode(Encoder& e) const {
  write_keys(e, keys);
}
ReleaseKeys ReleaseKeys::decode(Decoder& d) {
  return {read_keys(d, kMaxKeys)};
}

void KeyInMemory::encode(Encoder& e) const {
  write_key(e, key);
  e.write_uint(nbytes);
  write_strings(e, holders);
  write_optional_value(e, value);
}
KeyInMemory KeyInMemory::decode(Decoder& d) {
  KeyInMemory m;
  m.key = read_key(d);
  m.nbytes = d.read_uint();
  m.holders = read_strings(d, kMaxHolders);
  m.value = read_optional_value(d);
  return m;
}

void KeyErred::encode(Encoder& e) const {
  write_key(e, key);
  e.write_string(exception);
  write_key(e, blamed);
}
KeyErred KeyErred::decode(Decoder& d) {
  KeyErred m;
  m.key = read_key(d);
  m.exception = d.read_string();
  m.blamed = read_key(d);
  return m;
}

void KeyLost::encode(Encoder& e) const {
  write_key(e, key);
}
KeyLost KeyLost::decode(Decoder& d) {
  return {read_key(d)};
}

void KeyRetried::encode(Encoder& e) const {
  write_key(e, key);
}
KeyRetried KeyRetried::decode(Decoder& d) {
  return {read_key(d)};
}

void GraphRefused::encode(Encoder& e) const {
  e.write_string(message);
  write_keys(e, keys);
}
GraphRefused GraphRefused::decode(Decoder& d) {
  GraphRefused m;
  m.message = d.read_string();
  m.keys = read_keys(d, kMaxKeys);
  return m;
}

void Retry::encode(Encoder& e) const {
  e.write_uint(request);
  write_keys(e, keys);
}
Retry Retry::decode(Decoder& d) {
  Retry m;
  m.request = d.read_uint();
  m.keys = read_keys(d, kMaxKeys);
  return m;
}

void Retried::encode(Encoder& e) const {
  e.write_uint(request);
}
Retried Retried::decode(Decoder& d) {
  return {d.read_uint()};
}

void FireAndForget::encode(Encoder& e) const {
  write_keys(e, keys);
}
FireAndForget FireAndForget::decode(Decoder& d) {
  return {read_keys(d, kMaxKeys)};
}

void Unregister::encode(Encoder& e) const {
  e.write_string(reason);
}
Unregister Unregister::decode(Decoder& d) {
  return {d.read_string()};
}

void Identity::encode(Encoder& e) const {
  e.write_uint(request);
}
Identity Identity::decode(Decoder& d) {
  return {d.read_uint()};
}

void SchedulerInfo::encode(Encoder& e) const {
  e.write_uint(request);
  e.write_string(address);
  e.begin_array(workers.size());
  for (const auto& w : workers) {
    e.begin_array(6);
    e.write_string(w.address);
    e.write_string(w.name);
    e.write_int(w.nthreads);
    e.write_uint(w.memory_limit);
    e.write_uint(w.managed_bytes);
    e.write_bool(w.paused);
  }
}
SchedulerInfo SchedulerInfo::decode(Decoder& d) {
  SchedulerInfo m;
  m.request = d.read_uint();
  m.address = d.read_string();
  const uint64_t n = read_count(d, kMaxWorkers, "workers");
  for (uint64_t i = 0; i < n; ++i) {
    if (d.read_array() != 6) throw ProtocolError("scheduler-info workers have 6 fields");
    WorkerInfo w;
    w.address = d.read_string();
    w.name = d.read_string();
    const int64_t threads = d.read_int();
    if (threads < 1 || threads > 1 << 16)
      throw ProtocolError(fmt::format("worker nthreads {} out of range", threads));
    w.nthreads = static_cast<int32_t>(threads);
    w.memory_limit = d.read_uint();
    w.managed_bytes = d.read_uint();
    w.paused = d.read_bool();
    m.workers.push_back(std::move(w));
  }
  return m;
}

void CloseClient::encode(Encoder& e) const {
  e.write_uint(0);
}
CloseClient CloseClient::decode(Decoder& d) {
  (void)d.read_uint();
  return {};
}

void ComputeTask::encode(Encoder& e) const {
  write_key(e, key);
  e.write_uint(priority);
  write_payload(e, payload);
  e.begin_array(who_has.size());
  for (size_t i = 0; i < who_has.size(); ++i) {
    e.begin_array(3);
    write_key(e, who_has[i].first);
    write_strings(e, who_has[i].second);
    e.write_uint(i < nbytes.size() ? nbytes[i] : 0);
  }
}
ComputeTask ComputeTask::decode(Decoder& d) {
  ComputeTask c;
  c.key = read_key(d);
  c.priority = d.read_uint();
  c.payload = read_payload(d);
  const uint64_t n = read_count(d, kMaxKeys, "dependencies");
  c.who_has.reserve(n);
  c.nbytes.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (d.read_array() != 3) throw ProtocolError("who_has entries are [key, holders, nbytes]");
    Key k = read_key(d);
    c.who_has.emplace_back(std::move(k), read_strings(d, kMaxHolders));
    c.nbytes.push_back(d.read_uint());
  }
  return c;
}

void FreeKeys::encode(Encoder& e) const {
  write_keys(e, keys);
}
FreeKeys FreeKeys::decode(Decoder& d) {
  return {read_keys(d, kMaxKeys)};
}

void WorkerRemoved::encode(Encoder& e) const {
  e.write_string(reason);
}
WorkerRemoved WorkerRemoved::decode(Decoder& d) {
  return {d.read_string()};
}

void TaskFinished::encode(Encoder& e) const {
  write_key(e, key);
  e.write_uint(nbytes);
  e.write_double(duration);
  write_optional_value(e, value);
}
TaskFinished TaskFinished::decode(Decoder& d) {
  TaskFinished t;
  t.key = read_key(d);
  t.nbytes = d.read_uint();
  t.duration = d.read_double();
  t.value = read_optional_value(d);
  return t;
}

void StealRequest::encode(Encoder& e) const {
  write_key(e, key);
  e.write_uint(request);
}
StealRequest StealRequest::decode(Decoder& d) {
  StealRequest r;
  r.key = read_key(d);
  r.request = d.read_uint();
  return r;
}

void StealResponse::encode(Encoder& e) const {
  write_key(e, key);
  e.write_bool(stolen);
  e.write_uint(request);
}
StealResponse StealResponse::decode(Decoder& d) {
  StealResponse r;
  r.key = read_key(d);
  r.stolen = d.read_bool();
  r.request = d.read_uint();
  return r;
}

void TaskErred::encode(Encoder& e) const {
  write_key(e, key);
  e.write_string(exception);
}
TaskErred TaskErred::decode(Decoder& d) {
  TaskErred t;
  t.key = read_key(d);
  t.exception = d.read_string();
  return t;
}

void MissingData::encode(Encoder& e) const {
  write_key(e, key);
  write_key(e, missing);
  e.write_string(holder);
}
MissingData MissingData::decode(Decoder& d) {
  MissingData m;
  m.key = read_key(d);
  m.missing = read_key(d);
  m.holder = d.read_string();
  return m;
}

void Heartbeat::encode(Encoder& e) const {
  e.write_uint(managed_bytes);
  e.write_bool(paused);
}
Heartbeat Heartbeat::decode(Decoder& d) {
  Heartbeat h;
  h.managed_bytes = d.read_uint();
  h.paused = d.read_bool();
  return h;
}

void GetData::encode(Encoder& e) const {
  write_keys(e, keys);
}
GetData GetData::decode(Decoder& d) {
  return {read_keys(d, kMaxKeys)};
}

void Data::encode(Encoder& e) const {
  e.begin_array(values.size());
  for (const auto& [k, v] : values) {
    e.begin_array(2);
    write_key(e, k);
    e.write_value(v);
  }
  write_keys(e, missing);
}
Data Data::decode(Decoder& d) {
  Data out;
  const uint64_t n = read_count(d, kMaxKeys, "values");
  out.values.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (d.read_array() != 2) throw ProtocolError("data entries are [key, value]");
    Key k = read_key(d);
    out.values.emplace_back(std::move(k), d.read_value());
  }
  out.missing = read_keys(d, kMaxKeys);
  return out;
}

}  // namespace tessera::distributed::protocol
