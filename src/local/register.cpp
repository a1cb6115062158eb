// Registers the local schedulers under their names (and Dask's aliases for them).
#include "local/schedulers_internal.hpp"
#include "tessera/local.hpp"

namespace tessera::local {

std::shared_ptr<Scheduler> sync_scheduler() {
  static const std::shared_ptr<Scheduler> s = make_sync_scheduler();
  return s;
}

std::shared_ptr<Scheduler> threaded_scheduler() {
  static const std::shared_ptr<Scheduler> s = make_threaded_scheduler();
  return s;
}

namespace {
const bool kRegistered = [] {
  register_scheduler("sync", sync_scheduler());
  register_scheduler("synchronous", sync_scheduler());
  register_scheduler("single-threaded", sync_scheduler());
  register_scheduler("threads", threaded_scheduler());
  register_scheduler("threading", threaded_scheduler());
  return true;
}();
}  // namespace

}  // namespace tessera::local
