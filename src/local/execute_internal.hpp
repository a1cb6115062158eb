// Evaluating one task: its arguments from computed results, then its op.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <span>

#include "tessera/core/graph.hpp"

namespace tessera::local {

// Computes `task`, whose references (in argument order) are the positions `refs` of
// `results`.
Value execute_task(const Task& task, std::span<const uint32_t> refs, const Value* results);
// The same, run again up to `retries` times while it throws (the last error escapes), unless
// `stop` (when given) is set meanwhile: the computation failed elsewhere. Callbacks see the
// task once, whatever its attempts.
Value execute_task(const Task& task, std::span<const uint32_t> refs, const Value* results,
                   uint32_t retries, const std::atomic<bool>* stop = nullptr);

// The TaskError for `key`'s task failing with the current exception.
std::exception_ptr task_failure(const Key& key, const Task& task, std::exception_ptr error);

}  // namespace tessera::local
