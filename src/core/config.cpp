#include "tessera/core/config.hpp"

#include <fmt/format.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::config {

namespace {

struct Entry {
  std::string value;
  std::string origin;  // "set()", "TESSERA_X", "/path/file.toml:3"
};

struct State {
  std::mutex mu;
  std::map<std::string, std::string, std::less<>> overrides;
  std::map<std::string, Entry, std::less<>> files;
  bool loaded = false;
};

State& state() {
  static State s;
  return s;
}

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

bool name_chars(std::string_view s, bool dots) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || (dots && c == '.')))
      return false;
  }
  return true;
}

// One file's `key = value` lines into `out` (keys already there, from an earlier file, win).
void parse_file(const std::string& path, std::map<std::string, Entry, std::less<>>& out) {
  std::ifstream f(path);
  if (!f) throw IOError(fmt::format("cannot read the config file '{}'", path));
  std::map<std::string, Entry, std::less<>> mine;
  std::string section, line;
  for (int number = 1; std::getline(f, line); ++number) {
    auto bad = [&](const std::string& why) {
      return ValueError(fmt::format("config file {}:{}: {}", path, number, why));
    };
    // The value part may hold a '#' inside quotes; find the comment outside them.
    std::string text;
    char quote = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quote) {
        if (c == '\\' && quote == '"' && i + 1 < line.size()) {
          text += c;
          text += line[++i];
          continue;
        }
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '#') {
        break;
      }
      text += c;
    }
    text = trim(text);
    if (text.empty()) continue;
    if (text.front() == '[') {
      if (text.back() != ']') throw bad("a section header is [name]");
      section = trim(std::string_view(text).substr(1, text.size() - 2));
      if (!name_chars(section, true)) throw bad(fmt::format("'{}' is not a section name", section));
      continue;
    }
    const auto eq = text.find('=');
    if (eq == std::string::npos) throw bad("expected `key = value`, a [section] or a # comment");
    const std::string key = trim(std::string_view(text).substr(0, eq));
    if (!name_chars(key, false)) throw bad(fmt::format("'{}' is not a key name", key));
    const std::string raw = trim(std::string_view(text).substr(eq + 1));
    std::string value;
    if (raw.empty()) throw bad(fmt::format("'{}' has no value", key));
    if (raw.front() == '"' || raw.front() == '\'') {
      const char q = raw.front();
      size_t i = 1;
      for (; i < raw.size() && raw[i] != q; ++i) {
        if (q == '"' && raw[i] == '\\' && i + 1 < raw.size()) {
          const char e = raw[++i];
          value += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        } else {
          value += raw[i];
        }
      }
      if (i >= raw.size()) throw bad(fmt::format("the string of '{}' is not closed", key));
      if (i + 1 != raw.size()) throw bad(fmt::format("text after the string of '{}'", key));
    } else {
      char* end = nullptr;
      std::strtod(raw.c_str(), &end);
      if (raw != "true" && raw != "false" && *end != '\0') {
        throw bad(fmt::format("the value of '{}' must be a quoted string, a number or true/false, "
                              "not {}",
                              key, raw));
      }
      value = raw;
    }
    const std::string full = section.empty() ? key : section + "." + key;
    if (mine.count(full)) throw bad(fmt::format("'{}' is given twice", full));
    mine.emplace(full, Entry{value, fmt::format("{}:{}", path, number)});
  }
  for (auto& [k, e] : mine) out.emplace(k, std::move(e));  // earlier files win
}

std::map<std::string, Entry, std::less<>> parse_files(std::string_view paths, bool must_exist) {
  std::map<std::string, Entry, std::less<>> out;
  size_t at = 0;
  while (at <= paths.size()) {
    size_t end = paths.find(':', at);
    if (end == std::string_view::npos) end = paths.size();
    const std::string path(paths.substr(at, end - at));
    at = end + 1;
    if (path.empty()) continue;
    if (!must_exist && !std::filesystem::exists(path)) continue;
    parse_file(path, out);
  }
  return out;
}

void ensure_loaded(State& s) {
  if (s.loaded) return;
  if (const char* env = std::getenv("TESSERA_CONFIG"); env && *env) {
    s.files = parse_files(env, true);
  } else {
    std::string defaults;
    if (const char* home = std::getenv("HOME"); home && *home)
      defaults = std::string(home) + "/.config/tessera/tessera.toml:";
    defaults += "/etc/tessera/tessera.toml";
    s.files = parse_files(defaults, false);
  }
  s.loaded = true;
}

std::optional<Entry> lookup(std::string_view key) {
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (auto it = s.overrides.find(key); it != s.overrides.end()) return Entry{it->second, "set()"};
  const std::string env = environment_name(key);
  if (const char* v = std::getenv(env.c_str()); v && *v) return Entry{v, env};
  ensure_loaded(s);
  if (auto it = s.files.find(key); it != s.files.end()) return it->second;
  return std::nullopt;
}

}  // namespace

std::string environment_name(std::string_view key) {
  std::string out = "TESSERA_";
  for (char c : key) {
    out += (c == '.' || c == '-') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

std::optional<std::string> get(std::string_view key) {
  auto e = lookup(key);
  if (!e) return std::nullopt;
  return std::move(e->value);
}

std::string get_string(std::string_view key, std::string_view fallback) {
  auto e = lookup(key);
  return e ? e->value : std::string(fallback);
}

double get_number(std::string_view key, double fallback) {
  auto e = lookup(key);
  if (!e) return fallback;
  char* end = nullptr;
  const double v = std::strtod(e->value.c_str(), &end);
  if (e->value.empty() || *end != '\0') {
    throw ValueError(
        fmt::format("config: {} = '{}' (from {}) is not a number", key, e->value, e->origin));
  }
  return v;
}

bool get_bool(std::string_view key, bool fallback) {
  auto e = lookup(key);
  if (!e) return fallback;
  if (e->value == "true" || e->value == "1" || e->value == "yes") return true;
  if (e->value == "false" || e->value == "0" || e->value == "no") return false;
  throw ValueError(
      fmt::format("config: {} = '{}' (from {}) is not true or false", key, e->value, e->origin));
}

std::chrono::milliseconds get_seconds(std::string_view key, double fallback_seconds) {
  const double s = get_number(key, fallback_seconds);
  if (!(s >= 0)) {
    throw ValueError(fmt::format("config: {} must be a number of seconds, 0 or more, not {}", key, s));
  }
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

void set(std::string_view key, std::optional<std::string> value) {
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (value) {
    s.overrides.insert_or_assign(std::string(key), std::move(*value));
  } else if (auto it = s.overrides.find(key); it != s.overrides.end()) {
    s.overrides.erase(it);
  }
}

void load_files(std::string_view paths) {
  auto files = parse_files(paths, true);
  auto& s = state();
  std::lock_guard lock(s.mu);
  s.files = std::move(files);
  s.loaded = true;
}

}  // namespace tessera::config
