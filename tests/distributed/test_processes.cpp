// Real processes on loopback: tessera-scheduler and tessera-worker programs (the workers
// load the test's ops with --preload), a client speaking the protocol from this process.
// A worker is SIGKILLed in the middle of a computation: the result is still exact.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "comm/transport.hpp"
#include "distributed/protocol.hpp"
#include "tessera/core.hpp"
#include "test_support.hpp"

extern char** environ;

namespace comm = tessera::comm;
namespace pr = tessera::distributed::protocol;
using namespace std::chrono_literals;
using tessera::Arg;
using tessera::Graph;
using tessera::Key;
using tessera::Task;
using tessera::Value;

namespace {

// A child process, killed (SIGKILL) and reaped when this goes out of scope.
class Process {
 public:
  explicit Process(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
  }
  ~Process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void kill_now() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Waits for the process to exit; its exit code, or -1 if still running after `timeout`.
  int wait_exit(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }
  bool started() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

std::string wait_for_address(const std::filesystem::path& file) {
  for (int i = 0; i < 200; ++i) {
    std::ifstream f(file);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto at = text.find("tcp://");
    if (at != std::string::npos) return text.substr(at, text.find('"', at) - at);
    std::this_thread::sleep_for(25ms);
  }
  return {};
}

}  // namespace

TEST(Processes, ASigkilledWorkerLosesNothing) {
  // The client builds tasks calling the test ops (linked in), as the workers run them
  // (loaded with --preload).
  tessera::testing::TempDir dir;
  const auto file = dir.path() / "scheduler.json";
  Process scheduler({TESSERA_SCHEDULER_PROGRAM, "--address", "tcp://127.0.0.1:0",
                     "--scheduler-file", file.string(), "--worker-timeout", "1"});
  ASSERT_TRUE(scheduler.started());
  const std::string address = wait_for_address(file);
  ASSERT_FALSE(address.empty());
  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(std::make_unique<Process>(std::vector<std::string>{
        TESSERA_WORKER_PROGRAM, address, "--nthreads", "2", "--preload", TESSERA_TEST_OPS}));
  }
  // 60 slow increments (20 ms each) summed by a tree: about 0.4 s of work on 3 workers.
  Graph g;
  std::vector<Key> level;
  int64_t want = 0;
  for (int64_t i = 0; i < 60; ++i) {
    Key k("slow", {i});
    g.add(k, Task::call(tessera::get_op("ptest_slow_inc"),
                        {Arg(Value::of(i)), Arg(Value::of(int64_t{20}))}));
    level.push_back(k);
    want += i + 1;
  }
  for (int depth = 1; level.size() > 1; ++depth) {
    std::vector<Key> next;
    for (size_t i = 0; i + 1 < level.size(); i += 2) {
      Key k("sum-" + std::to_string(depth), {static_cast<int64_t>(i)});
      g.add(k,
            Task::call(tessera::get_op("ptest_add"), {Arg::ref(level[i]), Arg::ref(level[i + 1])}));
      next.push_back(k);
    }
    if (level.size() % 2) next.push_back(level.back());
    level = std::move(next);
  }
  comm::Connection client(address);
  client.send(comm::pack(comm::Handshake{.role = "client", .name = "test"}));
  auto hello = client.receive(10s);
  ASSERT_TRUE(hello && comm::unpack<comm::HandshakeReply>(*hello).accepted);
  std::this_thread::sleep_for(300ms);  // let the workers connect
  client.send(comm::pack(pr::to_update_graph(g, std::vector<Key>{level[0]})));
  std::this_thread::sleep_for(150ms);
  workers[0]->kill_now();  // in the middle of the computation
  std::optional<pr::KeyInMemory> mem;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!mem && std::chrono::steady_clock::now() < deadline) {
    client.send(comm::pack(pr::Heartbeat{0}));
    auto r = client.receive(200ms);
    if (!r) continue;
    for (const auto& m : comm::unpack_batch(std::move(*r))) {  // replies may come batched
      if (m.op == pr::KeyInMemory::kOp) mem = comm::unpack<pr::KeyInMemory>(m);
      ASSERT_NE(m.op, pr::KeyErred::kOp) << comm::unpack<pr::KeyErred>(m).exception;
    }
  }
  ASSERT_TRUE(mem.has_value()) << "no result within 30 s";
  ASSERT_EQ(mem->holders.size(), 1U);
  comm::Connection data(mem->holders[0]);
  data.send(comm::pack(pr::GetData{{level[0]}}));
  auto d = data.receive(10s);
  ASSERT_TRUE(d.has_value());
  const auto values = comm::unpack<pr::Data>(*d);
  ASSERT_EQ(values.values.size(), 1U);
  EXPECT_EQ(values.values[0].second.get<int64_t>(), want);
}

TEST(Processes, WorkersExitWhenTheSchedulerDies) {
  tessera::testing::TempDir dir;
  const auto file = dir.path() / "scheduler.json";
  auto scheduler = std::make_unique<Process>(
      std::vector<std::string>{TESSERA_SCHEDULER_PROGRAM, "--address", "tcp://127.0.0.1:0",
                               "--scheduler-file", file.string()});
  const std::string address = wait_for_address(file);
  ASSERT_FALSE(address.empty());
  Process worker({TESSERA_WORKER_PROGRAM, "--scheduler-file", file.string(), "--nthreads", "1",
                  "--death-timeout", "1"});
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(worker.wait_exit(10ms), -1);  // serving
  scheduler->kill_now();
  EXPECT_EQ(worker.wait_exit(10s), 3);  // "the scheduler ... was silent for 1000 ms"
}
