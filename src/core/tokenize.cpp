// Deterministic tokens: XXH3-128 over a canonical byte stream of the work's description.
// Nothing process-specific enters the stream for registered ops and codec-backed values,
// so tokens agree across runs and processes.
#include "tessera/core/tokenize.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>

#include "tessera/core/error.hpp"

namespace tessera {

namespace {

// XXH3-128 over everything fed to it. Small inputs (almost every task) are gathered in a
// stack buffer and hashed in one call; larger ones stream. Both give the same digest.
class XxHasher final : public Hasher {
 public:
  void update(const void* data, size_t size) override {
    if (size == 0) return;  // an empty vector's data() may be null: memcpy(null, 0) is UB
    if (!streaming_ && used_ + size <= sizeof(buf_)) {
      std::memcpy(buf_ + used_, data, size);
      used_ += size;
      return;
    }
    if (!streaming_) {
      XXH3_128bits_reset(&state_);
      XXH3_128bits_update(&state_, buf_, used_);
      streaming_ = true;
    }
    XXH3_128bits_update(&state_, data, size);
  }
  void tag(char c) { update(&c, 1); }
  void str(std::string_view s) {
    update_pod(static_cast<uint64_t>(s.size()));
    update(s.data(), s.size());
  }
  // Writes the 32 hex digits of the digest.
  void hex(char* out) {
    const XXH128_hash_t h = streaming_ ? XXH3_128bits_digest(&state_) : XXH3_128bits(buf_, used_);
    static constexpr char kDigits[] = "0123456789abcdef";
    for (int i = 0; i < 16; ++i) {
      out[15 - i] = kDigits[(h.high64 >> (4 * i)) & 0xf];
      out[31 - i] = kDigits[(h.low64 >> (4 * i)) & 0xf];
    }
  }
  std::string hex() {
    std::string out(32, '0');
    hex(out.data());
    return out;
  }

 private:
  unsigned char buf_[384];
  size_t used_ = 0;
  bool streaming_ = false;
  XXH3_state_t state_;
};

uint64_t random_u64() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(
      std::random_device{}() ^
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  return rng() ^ counter.fetch_add(0x9e3779b97f4a7c15ull, std::memory_order_relaxed);
}

void hash_value(const Value& v, XxHasher& h) {
  const TypeInfo& t = v.type();
  h.str(t.name);
  if (t.hash) {
    t.hash(v, h);
  } else if (t.encode) {
    detail::hash_via_codec(v, h);
  } else {
    // Values that cannot be compared get a unique token: they never merge with other work.
    h.update_pod(random_u64());
    h.update_pod(random_u64());
  }
}

void hash_key(const Key& k, XxHasher& h) {
  h.str(k.name());
  const auto idx = k.index();
  h.update_pod(static_cast<uint64_t>(idx.size()));
  if (!idx.empty()) h.update(idx.data(), idx.size() * sizeof(int64_t));
}

void hash_task(const Op* op, std::span<const Arg> args, XxHasher& h);

void hash_args(std::span<const Arg> args, XxHasher& h) {
  h.update_pod(static_cast<uint64_t>(args.size()));
  for (const Arg& a : args) {
    switch (a.kind()) {
      case Arg::Kind::kValue:
        h.tag('v');
        hash_value(a.value(), h);
        break;
      case Arg::Kind::kRef:
        h.tag('k');
        hash_key(a.ref(), h);
        break;
      case Arg::Kind::kList:
        h.tag('l');
        hash_args(a.list(), h);
        break;
      case Arg::Kind::kTask:
        h.tag('t');
        hash_task(a.task().op(), a.task().args(), h);
        break;
    }
  }
}

void hash_op(const Op* op, XxHasher& h) {
  if (!op) {
    h.tag('-');
    return;
  }
  h.str(op->name);
  if (!op->registered) {
    // A closure is identified by its name and its identity in this process.
    h.tag('c');
    h.update_pod(reinterpret_cast<uintptr_t>(op));
  }
}

void hash_task(const Op* op, std::span<const Arg> args, XxHasher& h) {
  hash_op(op, h);
  hash_args(args, h);
}

}  // namespace

std::string tokenize(const Value& v) {
  XxHasher h;
  hash_value(v, h);
  return h.hex();
}

std::string tokenize(const Task& task) {
  XxHasher h;
  hash_task(task.op(), task.args(), h);
  return h.hex();
}

std::string tokenize(const Op& op, std::span<const Arg> args) {
  XxHasher h;
  hash_task(&op, args, h);
  return h.hex();
}

std::string tokenize(std::span<const Value> values) {
  XxHasher h;
  h.update_pod(static_cast<uint64_t>(values.size()));
  for (const Value& v : values) hash_value(v, h);
  return h.hex();
}

std::string key_for(const Op& op, std::span<const Arg> args) {
  XxHasher h;
  hash_task(&op, args, h);
  std::string out;
  out.reserve(op.key_prefix.size() + 33);
  out += op.key_prefix;
  out += '-';
  out += h.hex();
  return out;
}

Key key_of_call(const Op& op, std::span<const Arg> args) {
  XxHasher h;
  hash_task(&op, args, h);
  const std::string& prefix = op.key_prefix;
  char buf[128];
  if (prefix.size() + 33 > sizeof(buf)) return Key(key_for(op, args));
  std::memcpy(buf, prefix.data(), prefix.size());
  buf[prefix.size()] = '-';
  h.hex(buf + prefix.size() + 1);
  return Key(std::string_view(buf, prefix.size() + 33));
}

std::string random_token() {
  XxHasher h;
  h.update_pod(random_u64());
  h.update_pod(random_u64());
  return h.hex();
}

}  // namespace tessera
