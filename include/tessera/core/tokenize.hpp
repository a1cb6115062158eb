// File: tessera/core/tokenize.hpp
//
// tokenize: a deterministic name for a piece of work. The same op and arguments give the
// same token in every run and every process (xxHash3-128 of the op's name, each argument's
// type name and bytes, and each referenced key), so identical work gets identical keys and
// merges. Values of a type with neither a codec nor a Codec<T>::hash get a random token
// (they cannot be compared), as do closures' tasks across processes.
//
//   tessera::tokenize(tessera::Value::of(int64_t{1}));     // 32 hex characters
//   tessera::Key k(tessera::key_for("inc", {tessera::Arg(tessera::Value::of(int64_t{1}))}));
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "tessera/core/task.hpp"

namespace tessera {

// Token of one value.
std::string tokenize(const Value& v);
// Token of a task: op name (closures: name and identity) and arguments.
std::string tokenize(const Task& task);
// Token of an op called with arguments.
std::string tokenize(const Op& op, std::span<const Arg> args);
// Token of several values, in order.
std::string tokenize(std::span<const Value> values);
// "<prefix>-<token>": the key name delayed() gives a call.
std::string key_for(const Op& op, std::span<const Arg> args);
// The same as a Key, built without a temporary string.
Key key_of_call(const Op& op, std::span<const Arg> args);
// A fresh random token (for work that must never merge with other work).
std::string random_token();

}  // namespace tessera
