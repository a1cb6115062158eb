#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "tessera/core.hpp"
#include "tessera/diagnostics.hpp"
#include "test_support.hpp"

namespace diagtest {
int64_t nap(int64_t x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return x;
}
int64_t plus(int64_t x, int64_t y) {
  return x + y;
}
}  // namespace diagtest
TESSERA_REGISTER(diagtest::nap);
TESSERA_REGISTER(diagtest::plus);

namespace tessera {
namespace {

using testing::error_of;
using testing::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

Graph naps(int64_t n, std::vector<Key>& outs) {
  Graph g;
  for (int64_t i = 0; i < n; ++i) {
    g.add(Key("nap", {i}), Task::call("diagtest::nap", {Arg(Value::of(i))}));
    outs.push_back(Key("nap", {i}));
  }
  return g;
}

TEST(ProgressBar, DrawsLikeDaskAndAtMostTenTimesASecond) {
  TempDir dir;
  const std::string path = dir.file("bar.txt");
  FILE* out = std::fopen(path.c_str(), "w");
  ASSERT_NE(out, nullptr);
  std::vector<Key> outs;
  const Graph g = naps(40, outs);  // about 0.4 s on sync
  double elapsed = 0;
  {
    ProgressBar bar({.width = 20, .force = true, .out = out});
    get(g, outs, {.scheduler = "sync"});
    elapsed = bar.last_elapsed();
    // "[####################] | 100% Completed |  0.Ds", D a digit.
    const std::string line = bar.last_line();
    const std::string head = "[" + std::string(20, '#') + "] | 100% Completed |  0.";
    EXPECT_TRUE(line.size() == head.size() + 2 && line.starts_with(head) &&
                std::isdigit(static_cast<unsigned char>(line[head.size()])) && line.back() == 's')
        << line;
  }
  std::fclose(out);
  const std::string text = slurp(path);
  const auto draws = static_cast<size_t>(std::count(text.begin(), text.end(), '\r'));
  EXPECT_GE(draws, 2u);                                      // some progress, then the final line
  EXPECT_LE(draws, static_cast<size_t>(elapsed / 0.1) + 2);  // never more than 10 per second
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.find("| 100% Completed |"), std::string::npos);
}

TEST(ProgressBar, SilentWhenNotATerminalUnlessForced) {
  TempDir dir;
  const std::string path = dir.file("quiet.txt");
  FILE* out = std::fopen(path.c_str(), "w");
  std::vector<Key> outs;
  const Graph g = naps(3, outs);
  {
    ProgressBar bar({.out = out});
    get(g, outs);
  }
  std::fclose(out);
  EXPECT_EQ(slurp(path), "");
  EXPECT_EQ(error_of<ValueError>([] { ProgressBar bar({.width = 0}); }),
            "ProgressBar width must be positive, got 0");
}

TEST(ProgressBar, MinimumHidesShortComputations) {
  TempDir dir;
  const std::string path = dir.file("min.txt");
  FILE* out = std::fopen(path.c_str(), "w");
  std::vector<Key> outs;
  const Graph g = naps(2, outs);
  {
    ProgressBar bar({.minimum = 10.0, .force = true, .out = out});
    get(g, outs);
  }
  std::fclose(out);
  EXPECT_EQ(slurp(path), "");
}

TEST(Profiler, RecordsEveryTaskWithWorkerAndTimes) {
  std::vector<Key> outs;
  const Graph g = naps(20, outs);
  Profiler prof;
  get(g, outs, {.scheduler = "threads", .num_workers = 2});
  const auto rs = prof.results();
  ASSERT_EQ(rs.size(), 20u);
  std::set<int> workers;
  for (const auto& r : rs) {
    EXPECT_EQ(r.op, "diagtest::nap");
    EXPECT_GE(r.end - r.start, 0.009);
    EXPECT_GE(r.start, 0.0);
    workers.insert(r.worker);
  }
  EXPECT_EQ(workers, (std::set<int>{0, 1}));  // two workers, both busy
  EXPECT_TRUE(
      std::is_sorted(rs.begin(), rs.end(), [](auto& a, auto& b) { return a.start < b.start; }));
  prof.clear();
  EXPECT_TRUE(prof.results().empty());
}

TEST(Profiler, WritesChromeTraceAndHtmlTaskStream) {
  std::vector<Key> outs;
  const Graph g = naps(6, outs);
  Profiler prof;
  get(g, outs, {.scheduler = "threads", .num_workers = 2});
  TempDir dir;
  const std::string trace = dir.file("trace.json"), html = dir.file("stream.html");
  prof.write_chrome_trace(trace);
  prof.write_html(html, "my <run>");
  // Python's json module is the independent oracle for the trace's validity.
  const std::string check =
      "/usr/bin/python3 -c \"import json,sys; d=json.load(open(sys.argv[1])); "
      "ev=[e for e in d['traceEvents'] if e['ph']=='X']; "
      "assert len(ev)==6 and all(e['dur']>=9000 and e['name']=='diagtest::nap' for e in ev)\" " +
      trace;
  EXPECT_EQ(std::system(check.c_str()), 0) << slurp(trace);
  const std::string page = slurp(html);
  EXPECT_NE(page.find("<title>my &lt;run&gt;</title>"), std::string::npos);
  EXPECT_NE(page.find("const OPS=[\"diagtest::nap\"]"), std::string::npos);
  EXPECT_EQ(std::count(page.begin(), page.end(), '['), std::count(page.begin(), page.end(), ']'));
  EXPECT_NE(page.find("('nap', 5)"), std::string::npos);
  EXPECT_EQ(page.find("src=\"http"), std::string::npos);  // self-contained
  EXPECT_NE(
      error_of<Error>([&] { prof.write_html("/nonexistent-dir/x.html"); }).find("cannot open"),
      std::string::npos);
}

Graph diamond() {
  Graph g;
  g.add(Key("x-0123456789abcdef0123456789abcdef"), Task::literal(Value::of(int64_t{1})));
  g.add(Key("y", {0}),
        Task::call("diagtest::plus", {Arg::ref(Key("x-0123456789abcdef0123456789abcdef")),
                                      Arg(Value::of(int64_t{1}))}));
  g.add(Key("y", {1}),
        Task::call("diagtest::plus", {Arg::ref(Key("x-0123456789abcdef0123456789abcdef")),
                                      Arg(Value::of(int64_t{2}))}));
  g.add(Key("z"), Task::call("diagtest::plus", {Arg::ref(Key("y", {0})), Arg::ref(Key("y", {1}))}));
  return g;
}

TEST(Visualize, DotHasDataBoxesTaskCirclesAndEdges) {
  const std::string dot = to_dot(diamond());
  EXPECT_NE(dot.find("rankdir=BT"), std::string::npos);
  EXPECT_EQ(std::count(dot.begin(), dot.end(), '\n'), 3 + 4 + 3 * 2 + 4 + 1);
  EXPECT_NE(dot.find("d0 [label=\"x\", shape=box, tooltip=\"x-0123456789abcdef0123456789abcdef\"]"),
            std::string::npos);  // tokens are hidden in labels
  EXPECT_NE(dot.find("d1 [label=\"(y, 0)\""), std::string::npos);
  EXPECT_NE(dot.find("t3 [label=\"diagtest::plus\", shape=circle"), std::string::npos);
  EXPECT_NE(dot.find("d1 -> t3;"), std::string::npos);
  EXPECT_NE(dot.find("t3 -> d3;"), std::string::npos);
  const std::string colored = to_dot(diamond(), {.rankdir = "LR", .color = "order"});
  EXPECT_NE(colored.find("rankdir=LR"), std::string::npos);
  EXPECT_EQ(std::count(colored.begin(), colored.end(), '#'), 3);  // three call tasks, each filled
  EXPECT_EQ(error_of<ValueError>([] { to_dot(Graph(), {.rankdir = "UP"}); }),
            "rankdir must be BT, TB, LR or RL, got 'UP'");
  EXPECT_EQ(error_of<ValueError>([] { to_dot(Graph(), {.color = "blue"}); }),
            "color must be '' or 'order', got 'blue'");
}

TEST(Visualize, WritesSvgPngAndDotFiles) {
  TempDir dir;
  visualize(diamond(), dir.file("g.svg"));
  visualize(diamond(), dir.file("g.png"));
  visualize(diamond(), dir.file("g.dot"));
  EXPECT_NE(slurp(dir.file("g.svg")).find("<svg"), std::string::npos);
  EXPECT_EQ(slurp(dir.file("g.png")).substr(1, 3), "PNG");
  EXPECT_EQ(slurp(dir.file("g.dot")), to_dot(diamond()));
  EXPECT_EQ(error_of<ValueError>([&] { visualize(diamond(), dir.file("g.xyz")); }),
            "cannot tell the picture format of '" + dir.file("g.xyz") +
                "': use .svg, .png, .pdf or .dot");
  EXPECT_NE(error_of<Error>([&] {
              visualize(diamond(), "/nonexistent-dir/g.svg");
            }).find("graphviz 'dot' failed"),
            std::string::npos);
}

TEST(Visualize, MissingGraphvizIsExplained) {
  TempDir dir;
  const char* old = std::getenv("PATH");
  const std::string saved = old ? old : "";
  setenv("PATH", dir.path().c_str(), 1);
  const std::string msg = error_of<Error>([&] { visualize(diamond(), dir.file("g.svg")); });
  setenv("PATH", saved.c_str(), 1);
  EXPECT_NE(msg.find("graphviz's 'dot' program was not found"), std::string::npos) << msg;
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

TEST(ProgressBar, AConcurrentComputationDoesNotEndTheShownOne) {
  testing::TempDir dir;
  FILE* out = std::fopen(dir.file("two.txt").c_str(), "w");
  std::vector<Key> long_outs, short_outs;
  const Graph slow = naps(30, long_outs);
  Graph quick;
  quick.add(Key("q"), Task::literal(Value::of(int64_t{1})));
  {
    ProgressBar bar({.force = true, .out = out});
    std::thread t([&] { get(slow, long_outs, {.scheduler = "sync"}); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    get(quick, std::vector<Key>{Key("q")});  // starts and finishes while the slow one is shown
    t.join();
    EXPECT_NE(bar.last_line().find("100% Completed"), std::string::npos);
    EXPECT_GE(bar.last_elapsed(), 0.25);  // the bar ended with the slow computation
  }
  std::fclose(out);
}

}  // namespace
}  // namespace tessera
