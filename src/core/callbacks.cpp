#include "tessera/core/callbacks.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>

namespace tessera {

namespace {

struct CallbackRegistry {
  std::mutex mutex;
  std::condition_variable released;
  std::vector<Callback*> active;
};

CallbackRegistry& callback_registry() {
  static CallbackRegistry* r = new CallbackRegistry();
  return *r;
}

}  // namespace

Callback::~Callback() {
  deactivate();
}

void Callback::activate() {
  CallbackRegistry& r = callback_registry();
  std::lock_guard lock(r.mutex);
  if (active_.exchange(true)) return;
  r.active.push_back(this);
}

void Callback::deactivate() {
  CallbackRegistry& r = callback_registry();
  std::unique_lock lock(r.mutex);
  if (active_.exchange(false)) r.active.erase(std::find(r.active.begin(), r.active.end(), this));
  r.released.wait(lock, [&] { return users_.load() == 0; });
}

CallbackSet::CallbackSet(std::span<Callback* const> extra) {
  CallbackRegistry& r = callback_registry();
  std::lock_guard lock(r.mutex);
  callbacks_ = r.active;
  for (Callback* c : extra) {
    if (c && std::find(callbacks_.begin(), callbacks_.end(), c) == callbacks_.end())
      callbacks_.push_back(c);
  }
  for (Callback* c : callbacks_) c->users_.fetch_add(1);
  held_ = callbacks_;
}

CallbackSet::~CallbackSet() {
  if (held_.empty()) return;
  CallbackRegistry& r = callback_registry();
  std::lock_guard lock(r.mutex);
  for (Callback* c : held_) c->users_.fetch_sub(1);
  r.released.notify_all();
}

void CallbackSet::start(const RunInfo& run) const {
  for (Callback* c : callbacks_) c->on_start(run);
}

void CallbackSet::finish(const RunInfo& run, bool failed) const {
  for (Callback* c : callbacks_) c->on_finish(run, failed);
}

}  // namespace tessera
