#include "tessera/diagnostics/visualize.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "tessera/core/error.hpp"
#include "tessera/core/order.hpp"

extern char** environ;

namespace tessera {

namespace {

std::string dot_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// "inc-<32 hex digits>" → "inc": tokens make pictures unreadable.
std::string short_name(std::string_view name) {
  if (name.size() > 33 && name[name.size() - 33] == '-') {
    const std::string_view tail = name.substr(name.size() - 32);
    if (std::all_of(tail.begin(), tail.end(),
                    [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
      return std::string(name.substr(0, name.size() - 33));
    }
  }
  return std::string(name);
}

std::string key_label(const Key& k) {
  if (k.index().empty()) return short_name(k.name());
  std::string out = "(";
  out += short_name(k.name());
  for (int64_t i : k.index()) out += fmt::format(", {}", i);
  return out + ")";
}

// A perceptually ordered ramp (viridis end points and middle), for "color by order".
std::string ramp(double t) {
  static constexpr double kStops[5][3] = {{0.267, 0.005, 0.329},
                                          {0.229, 0.322, 0.546},
                                          {0.128, 0.567, 0.551},
                                          {0.369, 0.789, 0.383},
                                          {0.993, 0.906, 0.144}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  int rgb[3];
  for (int c = 0; c < 3; ++c)
    rgb[c] = static_cast<int>(255 * (kStops[i][c] * (1 - f) + kStops[i + 1][c] * f));
  return fmt::format("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]);
}

std::string extension_of(const std::string& filename) {
  const size_t dot = filename.rfind('.');
  const size_t slash = filename.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = filename.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext;
}

}  // namespace

std::string to_dot(const Graph& graph, const VisualizeOptions& options) {
  static const char* kRankdirs[] = {"BT", "TB", "LR", "RL"};
  if (std::find(std::begin(kRankdirs), std::end(kRankdirs), options.rankdir) ==
      std::end(kRankdirs)) {
    throw ValueError(fmt::format("rankdir must be BT, TB, LR or RL, got '{}'", options.rankdir));
  }
  if (!options.color.empty() && options.color != "order") {
    throw ValueError(fmt::format("color must be '' or 'order', got '{}'", options.color));
  }
  const GraphStructure s = analyze(graph);
  std::vector<uint32_t> prio;
  if (options.color == "order") prio = order(graph, s, {});
  const double denom = graph.size() > 1 ? static_cast<double>(graph.size() - 1) : 1.0;

  std::ostringstream out;
  out << "digraph {\n  graph [rankdir=" << options.rankdir
      << "];\n  node [fontname=\"Helvetica\"];\n";
  for (size_t i = 0; i < graph.size(); ++i) {
    const Graph::Entry& e = graph[i];
    const std::string key = dot_escape(e.key.str());
    out << fmt::format("  d{} [label=\"{}\", shape=box, tooltip=\"{}\"];\n", i,
                       dot_escape(key_label(e.key)), key);
    const bool call = e.task->is_call();
    if (call) {
      std::string style;
      if (!prio.empty()) {
        style = fmt::format(", style=filled, fillcolor=\"{}\", fontcolor=\"{}\"",
                            ramp(prio[i] / denom), prio[i] / denom < 0.5 ? "white" : "black");
      }
      out << fmt::format("  t{} [label=\"{}\", shape=circle, tooltip=\"{}\"{}];\n  t{} -> d{};\n",
                         i, dot_escape(e.task->label()), key, style, i, i);
    }
    for (uint32_t d : s.deps_of(i)) out << fmt::format("  d{} -> {}{};\n", d, call ? "t" : "d", i);
  }
  out << "}\n";
  return out.str();
}

void visualize(const Graph& graph, const std::string& filename, const VisualizeOptions& options) {
  const std::string format = options.format.empty() ? extension_of(filename) : options.format;
  static const char* kFormats[] = {"svg", "png", "pdf", "jpg", "jpeg", "gif", "ps", "dot", "gv"};
  if (std::find(std::begin(kFormats), std::end(kFormats), format) == std::end(kFormats)) {
    throw ValueError(fmt::format(
        "cannot tell the picture format of '{}': use .svg, .png, .pdf or .dot", filename));
  }
  const std::string text = to_dot(graph, options);
  if (format == "dot" || format == "gv") {
    std::ofstream f(filename);
    if (!f || !(f << text)) throw Error(fmt::format("cannot write '{}'", filename));
    return;
  }
  char dot_path[] = "/tmp/tessera-graph-XXXXXX";
  const int fd = mkstemp(dot_path);
  if (fd < 0) throw Error("cannot create a temporary file for the DOT text");
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  char err_path[] = "/tmp/tessera-dot-err-XXXXXX";
  const int err_fd = mkstemp(err_path);
  if (!written || err_fd < 0) {
    ::unlink(dot_path);
    throw Error("cannot write the DOT text to a temporary file");
  }
  const std::string type = "-T" + (format == "jpeg" ? std::string("jpg") : format);
  std::vector<std::string> argv_s = {"dot", type, "-o", filename, dot_path};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "dot", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  if (rc == 0) waitpid(pid, &status, 0);
  std::string err;
  {
    std::ifstream ef(err_path);
    std::getline(ef, err, '\0');
  }
  ::close(err_fd);
  ::unlink(err_path);
  ::unlink(dot_path);
  if (rc != 0) {
    throw Error(
        fmt::format("cannot draw '{}': graphviz's 'dot' program was not found (install graphviz, "
                    "or write a .dot file)",
                    filename));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error(fmt::format("graphviz 'dot' failed to write '{}': {}", filename,
                            err.empty() ? "no message" : err));
  }
}

}  // namespace tessera
