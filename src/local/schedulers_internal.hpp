#pragma once

#include <memory>

#include "tessera/core/scheduler.hpp"

namespace tessera::local {

std::shared_ptr<Scheduler> make_sync_scheduler();
std::shared_ptr<Scheduler> make_threaded_scheduler();

}  // namespace tessera::local
