// Real processes on loopback: tessera-scheduler and tessera-worker programs (the workers
// load the test's ops with --preload), a client speaking the protocol from this process.
// A worker is SIGKILLed in the middle of a computation: the result is still exact.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <thread>

#include <httplib.h>
#include <zmq.hpp>

#include "block_checks.hpp"
#include "comm/transport.hpp"
#include "distributed/protocol.hpp"
#include "distributed/scheduler_server.hpp"
#include "tessera/core.hpp"
#include "tessera/distributed.hpp"
#include "test_ops.hpp"
#include "test_support.hpp"

extern char** environ;

namespace comm = tessera::comm;
namespace td = tessera::distributed;
using tessera::testing::error_of;
using tessera::testing::eventually;
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
  // With `output` given, its standard output and error go to that file; `env` is added to
  // this process's environment.
  explicit Process(std::vector<std::string> args, const std::string& output = {},
                   std::vector<std::string> env = {}) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; ++e) {
      // A variable given here replaces this process's (getenv takes the first it finds).
      const std::string_view have(*e);
      const bool replaced = std::any_of(env.begin(), env.end(), [&](const std::string& v) {
        return have.substr(0, have.find('=') + 1) == v.substr(0, v.find('=') + 1);
      });
      if (!replaced) envp.push_back(*e);
    }
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (!output.empty()) {
      posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                       0600);
      posix_spawn_file_actions_adddup2(&actions, 1, 2);
    }
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
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
  // Asks it to stop (SIGTERM), then waits as wait_exit does.
  int stop(std::chrono::milliseconds timeout) {
    kill(pid_, SIGTERM);
    return wait_exit(timeout);
  }
  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

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
                     "--scheduler-file", file.string(), "--worker-timeout", "3"});
  ASSERT_TRUE(scheduler.started());
  const std::string address = wait_for_address(file);
  ASSERT_FALSE(address.empty());
  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(std::make_unique<Process>(std::vector<std::string>{
        TESSERA_WORKER_PROGRAM, address, "--nthreads", "2", "--preload", TESSERA_TEST_OPS,
        "--no-nanny"}));  // the worker itself is killed, not a nanny
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

// The test: the scheduler killed under a running computation. The client's futures
// fail within its scheduler_timeout, and the worker (under its nanny, the default) exits
// after --death-timeout, the nanny with it.
TEST(Processes, TheSchedulerKilledUnderAComputation) {
  tessera::testing::TempDir dir;
  const auto file = dir.path() / "scheduler.json";
  auto scheduler = std::make_unique<Process>(
      std::vector<std::string>{TESSERA_SCHEDULER_PROGRAM, "--address", "tcp://127.0.0.1:0",
                               "--scheduler-file", file.string(), "--http", ""});
  const std::string address = wait_for_address(file);
  ASSERT_FALSE(address.empty());
  // (3 s: under TSan, on 2 busy cores, a live scheduler can take over a second to answer.)
  Process worker({TESSERA_WORKER_PROGRAM, "--scheduler-file", file.string(), "--nthreads", "1",
                  "--death-timeout", "3", "--preload", TESSERA_TEST_OPS});
  // (3 s: under a sanitizer, on 2 busy cores, a heartbeat answer can take over a second.)
  tessera::Client client(address, {.heartbeat_interval = 100ms,
                                   .scheduler_timeout = 3000ms,
                                   .set_as_default = false});
  EXPECT_EQ(client.submit(ptest_inc, int64_t{1}).result(10000ms), 2);  // the worker serves
  auto slow = client.map(ptest_slow_inc, std::vector<int64_t>{1, 2, 3, 4},
                         std::vector<int64_t>(4, 500));
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(slow[0].done());
  scheduler->kill_now();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& f : slow) {
    EXPECT_EQ(error_of<tessera::SchedulerError>([&] { (void)f.result(10000ms); }),
              "lost the scheduler at " + address + ": silent for 3000 ms");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 6000ms);
  EXPECT_EQ(worker.wait_exit(20s), 3);  // "the scheduler ... was silent for 3000 ms"
}

namespace {

// The live children of process `parent` (from /proc/*/stat).
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(entry.path() / "stat");
    std::string stat;
    std::getline(f, stat);
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    pid_t ppid = 0;
    std::istringstream rest(stat.substr(close + 2));
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z') out.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(Nanny, StartsNWorkersAndStartsAgainOneThatDies) {
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0", .worker_timeout = 1000ms});
  scheduler.start();
  Process nanny({TESSERA_WORKER_PROGRAM, scheduler.address(), "--nworkers", "2", "--nthreads",
                 "1", "--name", "nw", "--preload", TESSERA_TEST_OPS});
  ASSERT_TRUE(eventually([&] { return scheduler.worker_count() == 2; }));
  const auto first = children_of(nanny.pid());
  ASSERT_EQ(first.size(), 2U);
  // Its workers get one BLAS thread each, unless the environment says otherwise.
  const char* blas = std::getenv("OPENBLAS_NUM_THREADS");
  const auto env = tessera::testing::environment_of(first[1]);
  const std::string want = std::string("OPENBLAS_NUM_THREADS=") + (blas ? blas : "1");
  EXPECT_NE(std::find(env.begin(), env.end(), want), env.end()) << want;
  kill(first[0], SIGKILL);  // a worker crashes: the nanny starts another
  ASSERT_TRUE(eventually([&] {
    const auto now = children_of(nanny.pid());
    return now.size() == 2 && now != first;
  }));
  // The dead one is removed after worker_timeout; its replacement serves.
  ASSERT_TRUE(eventually([&] { return scheduler.worker_count() == 2; }));
  tessera::Client client(scheduler.address(), {.set_as_default = false});
  auto fs = client.map(ptest_inc, std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  EXPECT_EQ(client.gather(fs), (std::vector<int64_t>{2, 3, 4, 5, 6, 7}));
  // SIGTERM to the nanny stops its workers and itself.
  const auto workers = children_of(nanny.pid());
  kill(nanny.pid(), SIGTERM);
  EXPECT_EQ(nanny.wait_exit(10s), 0);
  for (pid_t w : workers) EXPECT_NE(kill(w, 0), 0) << "worker " << w << " outlived its nanny";
  // --nworkers without a nanny, and a bad count, are refused with the reason.
  Process alone({TESSERA_WORKER_PROGRAM, scheduler.address(), "--nworkers", "2", "--no-nanny"});
  EXPECT_EQ(alone.wait_exit(10s), 1);
}

// A task that outgrows its worker: the nanny kills the worker past 95% of its memory limit
// and starts another; after the task has killed 3 workers it fails with KilledWorker, and
// the cluster goes on serving.
TEST(Nanny, RestartsAWorkerPastItsMemoryLimitAndTheTaskFailsWithKilledWorker) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizers' shadow memory makes resident sizes meaningless";
#endif
  tessera::LocalCluster cluster({.n_workers = 1,
                                 .threads_per_worker = 1,
                                 .worker_program = TESSERA_WORKER_PROGRAM,
                                 .preload = {TESSERA_TEST_OPS},
                                 .memory_limit = 256ULL << 20,
                                 .worker_timeout = 1000ms,
                                 .nanny = true});
  tessera::Client client(cluster, {.set_as_default = false});
  EXPECT_EQ(client.submit(ptest_hog, int64_t{50}, int64_t{0}).result(20000ms), 50);
  auto hog = client.submit(ptest_hog, int64_t{400}, int64_t{3000});
  const std::string error = error_of<tessera::TaskError>([&] { (void)hog.result(60000ms); });
  EXPECT_NE(error.find("KilledWorker: attempted to run task '" + hog.key().str() +
                       "' on 3 different workers"),
            std::string::npos)
      << error;
  EXPECT_EQ(client.submit(ptest_inc, int64_t{41}).result(20000ms), 42);
}

// The programs take every default from a config file (--config, or TESSERA_CONFIG), and a
// malformed one stops them with its file and line.
TEST(Processes, ProgramsReadTheirDefaultsFromAConfigFile) {
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0"});
  scheduler.start();
  tessera::testing::TempDir dir;
  const std::string file = dir.file("tessera.toml");
  std::ofstream(file) << "[worker]\nscheduler = \"" << scheduler.address()
                      << "\"\nnthreads = 1\nnanny = false\npreload = \"" TESSERA_TEST_OPS
                         "\"\nqueue-time = 0\ninline-time = 0\n";
  Process worker({TESSERA_WORKER_PROGRAM, "--config", file});
  ASSERT_TRUE(eventually([&] { return scheduler.worker_count() == 1; }));
  tessera::Client client(scheduler.address(), {.set_as_default = false});
  EXPECT_EQ(client.submit(ptest_inc, int64_t{1}).result(10000ms), 2);  // the preloaded op
  const std::string bad = dir.file("bad.toml");
  std::ofstream(bad) << "[worker]\nnthreads = many\n";
  Process refused({TESSERA_WORKER_PROGRAM, "--config", bad});
  EXPECT_EQ(refused.wait_exit(10s), 1);
  Process scheduler_refused({TESSERA_SCHEDULER_PROGRAM, "--config=" + bad});
  EXPECT_EQ(scheduler_refused.wait_exit(10s), 1);
  // The placement and tiny-task settings are checked like the others.
  const std::string bad_placement = dir.file("bad-placement.toml");
  std::ofstream(bad_placement) << "[scheduler]\nspeculative-assignment = \"sometimes\"\n";
  Process placement_refused({TESSERA_SCHEDULER_PROGRAM, "--config", bad_placement});
  EXPECT_EQ(placement_refused.wait_exit(10s), 1);
  Process out_of_range({TESSERA_WORKER_PROGRAM, scheduler.address(), "--no-nanny",
                        "--queue-time", "5"});
  const int rc = out_of_range.wait_exit(10s);
  EXPECT_NE(rc, 0);
  EXPECT_NE(rc, -1);  // exited, refused by the option's range check
}

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A program's exit code and what it printed (standard output and error together).
struct Ran {
  int code = -1;
  std::string output;
};
Ran run(const tessera::testing::TempDir& dir, std::vector<std::string> args,
        std::vector<std::string> env = {}) {
  static int n = 0;
  const std::string out = dir.file("out-" + std::to_string(++n) + ".txt");
  Process p(std::move(args), out, std::move(env));
  Ran r;
  r.code = p.wait_exit(20s);
  r.output = read_text(out);
  return r;
}

// Checks that `r` failed (exit code `code`, or any failure if 0) and said `message`.
void expect_refused(const Ran& r, const std::string& message, int code = 1) {
  if (code == 0) {
    EXPECT_GT(r.code, 0) << r.output;
  } else {
    EXPECT_EQ(r.code, code) << r.output;
  }
  EXPECT_NE(r.output.find(message), std::string::npos) << "expected '" << message << "' in:\n"
                                                       << r.output;
}

}  // namespace

// Every way to start the scheduler wrong stops it with a message that names the problem.
TEST(Programs, TheSchedulerRefusesBadInputSayingWhy) {
  tessera::testing::TempDir dir;
  const std::string s = TESSERA_SCHEDULER_PROGRAM;
  const std::string any = "tcp://127.0.0.1:0";
  expect_refused(run(dir, {s, "--address", "bogus", "--http", ""}),
                 "[scheduler] [error] cannot listen on 'bogus': Invalid argument");
  expect_refused(run(dir, {s, "--worker-timeout", "0"}),
                 "--worker-timeout: Value 0 not in range 0.001", 0);
  expect_refused(run(dir, {s, "--bogus-flag"}),
                 "The following argument was not expected: --bogus-flag", 0);
  expect_refused(
      run(dir, {s, "--address", any, "--http", "", "--curve-key", dir.file("none.key")}),
      "cannot read the key file '" + dir.file("none.key") + "': No such file or directory");
  const std::string no_dir = dir.file("no-such-dir/scheduler.json");
  expect_refused(run(dir, {s, "--address", any, "--http", "", "--scheduler-file", no_dir}),
                 "cannot write the scheduler file '" + no_dir + "': No such file or directory");
  expect_refused(
      run(dir, {s, "--address", any, "--http", ""}, {"TESSERA_SCHEDULER_WORKER_TIMEOUT=abc"}),
      "config: scheduler.worker-timeout = 'abc' (from TESSERA_SCHEDULER_WORKER_TIMEOUT) "
      "is not a number");
  const std::string syntax = dir.file("syntax.toml");
  std::ofstream(syntax) << "oops = [\n";
  expect_refused(run(dir, {s, "--config", syntax}),
                 "config file " + syntax + ":1: the value of 'oops' must be a quoted string");
  expect_refused(run(dir, {s, "--address", any, "--http", "999.1.1.1:80"}),
                 "cannot serve HTTP on '999.1.1.1:80': no such host");
  EXPECT_EQ(run(dir, {s, "--version"}).output, "tessera-scheduler " TESSERA_VERSION "\n");
}

// A busy HTTP port is no reason not to schedule: the scheduler serves HTTP elsewhere and
// says so.
TEST(Programs, TheSchedulerServesHttpElsewhereWhenItsPortIsTaken) {
  const int taken = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(taken, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(taken, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(taken, 1), 0);
  ASSERT_EQ(getsockname(taken, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string port = std::to_string(ntohs(a.sin_port));
  tessera::testing::TempDir dir;
  const std::string out = dir.file("out.txt"), file = dir.file("scheduler.json");
  Process scheduler({TESSERA_SCHEDULER_PROGRAM, "--address", "tcp://127.0.0.1:0", "--http",
                     "127.0.0.1:" + port, "--scheduler-file", file},
                    out);
  EXPECT_FALSE(wait_for_address(file).empty()) << read_text(out);
  EXPECT_EQ(scheduler.stop(10s), 0);
  close(taken);
  const std::string log = read_text(out);
  EXPECT_NE(log.find("[warning] cannot serve HTTP on '127.0.0.1:" + port +
                     "': Address already in use; serving HTTP on another port"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("health and metrics at http://127.0.0.1:"), std::string::npos) << log;
  EXPECT_EQ(log.find("health and metrics at http://127.0.0.1:" + port + "\n"), std::string::npos)
      << log;
}

TEST(Programs, TheWorkerRefusesBadInputSayingWhy) {
  tessera::testing::TempDir dir;
  const std::string w = TESSERA_WORKER_PROGRAM;
  const std::string nowhere = "tcp://127.0.0.1:1";  // nothing listens there
  expect_refused(run(dir, {w}),
                 "[worker] [error] give the scheduler's address or --scheduler-file");
  expect_refused(run(dir, {w, "--scheduler-file", dir.file("none.json")}),
                 "cannot read the scheduler file '" + dir.file("none.json") + "'");
  const std::string empty = dir.file("empty.json");
  std::ofstream(empty) << "{\"nothing\": 1}\n";
  expect_refused(run(dir, {w, "--scheduler-file", empty}),
                 "the scheduler file '" + empty + "' holds no tcp:// address");
  expect_refused(run(dir, {w, nowhere, "--memory-limit", "lots"}),
                 "memory limit: cannot read 'lots' (give bytes, 4GiB, 500MB");
  expect_refused(run(dir, {w, nowhere, "--nworkers", "2", "--no-nanny"}),
                 "--nworkers 2 needs the nanny, which starts them (drop --no-nanny)");
  const std::string many = dir.file("many.toml");
  std::ofstream(many) << "[worker]\nnthreads = \"many\"\n";
  expect_refused(run(dir, {w, nowhere, "--config", many}),
                 "config: worker.nthreads = 'many' (from " + many + ":2) is not a number");
  expect_refused(run(dir, {w, nowhere, "--nthreads", "0"}),
                 "--nthreads: Value 0 not in range 1 to 4096", 0);
  expect_refused(run(dir, {w, nowhere, "--memory-pause", "1.5"}),
                 "--memory-pause: Value 1.5 not in range 0", 0);
  expect_refused(run(dir, {w, nowhere, "--no-nanny", "--memory-limit", "1GiB", "--memory-target",
                           "0.9", "--memory-spill", "0.7"}),
                 "worker memory fractions must satisfy 0 < target <= spill <= pause <= 1, got "
                 "0.9, 0.7, 0.8");
  const std::string lib = dir.file("none.so");
  expect_refused(run(dir, {w, nowhere, "--no-nanny", "--preload", lib}),
                 "--preload " + lib + ": " + lib + ": cannot open shared object file");
  expect_refused(run(dir, {w, nowhere, "--no-nanny", "--connect-timeout", "0.3"}),
                 "the scheduler at tcp://127.0.0.1:1 did not answer within 300 ms");
  expect_refused(run(dir, {w, nowhere, "--no-nanny", "--listen", "bogus"}),
                 "cannot listen on 'bogus': Invalid argument");
  expect_refused(run(dir, {w, nowhere, "--interface", "tsr-none0"}),
                 "[worker] [error] interface 'tsr-none0' has no IPv4 address that is up (those "
                 "that do: ");
  expect_refused(run(dir, {w, nowhere, "--interface", "lo", "--listen", "tcp://127.0.0.1:0"}),
                 "[worker] [error] give --listen or --interface, not both");
  expect_refused(run(dir, {w, nowhere, "--no-nanny", "--contact-address", "tcp://0.0.0.0:5"}),
                 "the contact address 'tcp://0.0.0.0:5' names every interface: give one that "
                 "peers can reach");
  // A scheduler name that does not resolve (yet): noted, then waited for like any other.
  const Ran unresolved =
      run(dir, {w, "tcp://no-such-host.invalid:8786", "--no-nanny", "--connect-timeout", "0.3"});
  expect_refused(unresolved, "cannot resolve 'no-such-host.invalid' to an IPv4 address: ");
  expect_refused(unresolved,
                 "the scheduler at tcp://no-such-host.invalid:8786 did not answer within 300 ms");
  expect_refused(run(dir, {w, nowhere, "--nworkers", "2", "--contact-address", "tcp://10.1.1.1:5"}),
                 "--nworkers 2 workers cannot share one --contact-address: start one "
                 "tessera-worker per contact address");
  expect_refused(run(dir, {w, nowhere, "--nworkers", "2", "--listen", "tcp://127.0.0.1:7000"}),
                 "--nworkers 2 workers cannot all listen on tcp://127.0.0.1:7000: give port 0 (any "
                 "free one)");
  // The config file's worker.listen gives way to --interface here; two at one level clash.
  const std::string listens = dir.file("listens.toml");
  std::ofstream(listens) << "[worker]\nlisten = \"tcp://127.0.0.1:0\"\ninterface = \"lo\"\n";
  expect_refused(run(dir, {w, nowhere, "--config", listens}),
                 "config: give worker.listen or worker.interface, not both");
  expect_refused(run(dir, {w, nowhere, "--config", listens, "--no-nanny", "--interface", "lo",
                           "--connect-timeout", "0.3"}),
                 "the scheduler at tcp://127.0.0.1:1 did not answer within 300 ms");
  // Under the nanny: the worker's own message, then the nanny's.
  const Ran nanny = run(dir, {w, nowhere, "--preload", lib});
  expect_refused(nanny, "[worker] [error] --preload " + lib);
  expect_refused(nanny, "[nanny] [error] worker 0 (pid ");
  expect_refused(nanny, "could not start (exit code 1; its log above says why); stopping");
  expect_refused(run(dir, {w, nowhere, "--spill-compression", "gzip"}),
                 "--spill-compression: gzip not in {lz4,zstd,none}", 0);
  expect_refused(run(dir, {w, nowhere}, {"TESSERA_WORKER_SPILL_COMPRESSION=gzip"}),
                 "--spill-compression: gzip not in {lz4,zstd,none}", 0);
  expect_refused(run(dir, {w, nowhere}, {"TESSERA_WORKER_BLAS_THREADS=2.5"}),
                 "config: worker.blas-threads must be a whole number from 0 to 1024, not 2.5");
  EXPECT_EQ(run(dir, {w, "--version"}).output, "tessera-worker " TESSERA_VERSION "\n");
}

// A program of the user's serving as a worker (tessera::init) reads its settings from
// TESSERA_WORKER_* and refuses bad ones by name.
TEST(Programs, AUserProgramServingAsAWorkerRefusesBadSettingsSayingWhy) {
  tessera::testing::TempDir dir;
  const std::string program = TESSERA_USER_PROGRAM;
  const std::string worker = "TESSERA_RUN_WORKER=tcp://127.0.0.1:1";
  expect_refused(run(dir, {program}, {worker, "TESSERA_WORKER_NTHREADS=abc"}),
                 "TESSERA_WORKER_NTHREADS must be a number in [1, 4096], got 'abc'");
  expect_refused(run(dir, {program}, {worker, "TESSERA_WORKER_MEMORY_TARGET=2"}),
                 "TESSERA_WORKER_MEMORY_TARGET must be a number in [0, 1], got '2'");
  expect_refused(run(dir, {program}, {worker, "TESSERA_WORKER_SPILL_COMPRESSION=gzip"}),
                 "spill compression 'gzip' is not one of lz4, zstd and none");
  expect_refused(run(dir, {program}, {worker, "TESSERA_WORKER_NWORKERS=2"}),
                 "TESSERA_WORKER_NWORKERS=2 needs the nanny, which starts them "
                 "(TESSERA_WORKER_NANNY=1)");
  expect_refused(run(dir, {program}, {worker, "TESSERA_WORKER_CONNECT_TIMEOUT=0.3"}),
                 "the scheduler at tcp://127.0.0.1:1 did not answer within 300 ms");
  expect_refused(run(dir, {program}, {worker, "TESSERA_WORKER_INTERFACE=tsr-none0"}),
                 "interface 'tsr-none0' has no IPv4 address that is up");
  expect_refused(
      run(dir, {program},
          {worker, "TESSERA_WORKER_INTERFACE=lo", "TESSERA_WORKER_LISTEN=tcp://127.0.0.1:0"}),
      "give TESSERA_WORKER_LISTEN or TESSERA_WORKER_INTERFACE, not both");
  expect_refused(run(dir, {program}, {worker, "TESSERA_WORKER_CONTACT_ADDRESS=tcp://*:7"}),
                 "the contact address 'tcp://*:7' names every interface: give one that peers "
                 "can reach");
}

TEST(Programs, TesseraKeysWritesChecksAndRefusesSayingWhy) {
  tessera::testing::TempDir dir;
  const std::string k = TESSERA_KEYS_PROGRAM;
  const std::string key = dir.file("cluster.key");
  expect_refused(run(dir, {k}), "file is required", 0);
  const Ran made = run(dir, {k, key});
  ASSERT_EQ(made.code, 0) << made.output;
  ASSERT_TRUE(made.output.starts_with(key + ": public key ")) << made.output;
  const std::string public_key = made.output.substr(key.size() + 13, 40);
  EXPECT_EQ(tessera::Security::from_file(key).public_key, public_key);
  EXPECT_EQ(std::filesystem::status(key).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  const Ran checked = run(dir, {k, "--check", key});
  EXPECT_EQ(checked.code, 0) << checked.output;
  EXPECT_EQ(checked.output, made.output);
  expect_refused(run(dir, {k, key}),
                 "tessera-keys: cannot write the key file '" + key +
                     "': File exists (give --force to replace it; peers holding the old key are "
                     "then refused)");
  const Ran replaced = run(dir, {k, key, "--force"});
  EXPECT_EQ(replaced.code, 0) << replaced.output;
  EXPECT_NE(tessera::Security::from_file(key).public_key, public_key);
  expect_refused(run(dir, {k, "--check", dir.file("none.key")}),
                 "tessera-keys: cannot read the key file '" + dir.file("none.key") +
                     "': No such file or directory");
  const std::string garbage = dir.file("garbage.key");
  std::ofstream(garbage) << "garbage\n";
  std::filesystem::permissions(
      garbage, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  expect_refused(run(dir, {k, "--check", garbage}),
                 "the key file '" + garbage + "' holds no CURVE key pair");
  std::filesystem::permissions(key, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  expect_refused(run(dir, {k, "--check", key}),
                 "the key file '" + key + "' may be read by other users (mode 0640)");
  const std::string no_dir = dir.file("no-such-dir/x.key");
  expect_refused(run(dir, {k, no_dir}), "tessera-keys: cannot write the key file '" + no_dir +
                                            "': No such file or directory");
  EXPECT_EQ(run(dir, {k, "--version"}).output, "tessera-keys " TESSERA_VERSION "\n");
}

// The hostile-input test against the scheduler program itself: garbage on its port,
// a ZeroMQ peer speaking something else, a truncated tessera head, a message before the
// handshake and a client sending a worker's message. Each such connection is dropped (and
// counted in /metrics), and the scheduler goes on serving a real client and worker.
TEST(Processes, TheSchedulerProgramDropsHostilePeersAndServesOthers) {
  tessera::testing::TempDir dir;
  const auto file = dir.path() / "scheduler.json";
  const std::string log = dir.file("scheduler.log");
  Process scheduler({TESSERA_SCHEDULER_PROGRAM, "--address", "tcp://127.0.0.1:0",
                     "--scheduler-file", file.string(), "--http", "127.0.0.1:0"},
                    log);
  const std::string address = wait_for_address(file);
  ASSERT_FALSE(address.empty()) << read_text(log);
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  const char junk[] = "\xff\x00\x00\x00\x00\x00\x00\x00\x7f GET / HTTP/1.1\r\n\r\n garbage";
  ASSERT_TRUE(tessera::testing::send_raw_tcp(port, std::string_view(junk, sizeof junk)));
  zmq::context_t ctx(1);
  auto rogue = [&] {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.connect(address);
    return s;
  };
  zmq::socket_t stranger = rogue(), cut = rogue();
  stranger.send(zmq::str_buffer("hello, I am not tessera"), zmq::send_flags::none);
  const auto head =
      comm::encode_head(comm::pack(comm::Handshake{.role = "client", .name = "rogue"}));
  cut.send(zmq::buffer(head.data(), 6), zmq::send_flags::none);
  comm::Connection early(address);  // a message before its handshake
  early.send(comm::pack(pr::ReleaseKeys{{Key("x")}}));
  comm::Connection impostor(address);  // a client sending what only workers send
  impostor.send(comm::pack(comm::Handshake{.role = "client", .name = "impostor"}));
  ASSERT_TRUE(impostor.receive(5000ms).has_value());  // accepted as a client
  impostor.send(comm::pack(pr::TaskFinished{Key("y"), 8, 0.001}));

  Process worker({TESSERA_WORKER_PROGRAM, address, "--nthreads", "1", "--preload", TESSERA_TEST_OPS,
                  "--no-nanny"});
  tessera::Client client(address, {.set_as_default = false});
  auto f = client.map(ptest_inc, std::vector<int64_t>{1, 2, 3});
  EXPECT_EQ(client.gather(f, 20000ms), (std::vector<int64_t>{2, 3, 4}));

  std::string text = read_text(log);
  const auto at = text.find("health and metrics at http://");
  ASSERT_NE(at, std::string::npos) << text;
  const std::string url = text.substr(at + 22, text.find('\n', at) - at - 22);
  httplib::Client http(url);
  // The metrics are a snapshot the scheduler's loop publishes now and then.
  std::string body;
  auto dropped = [&] {
    auto r = http.Get("/metrics");
    body = r ? r->body : "";
    const auto d = body.find("\ntessera_scheduler_dropped_messages_total ");
    return d == std::string::npos ? -1 : std::atoi(body.c_str() + d + 42);
  };
  EXPECT_TRUE(eventually([&] {
    return dropped() >= 4 && body.find("\ntessera_scheduler_workers 1\n") != std::string::npos &&
           body.find("\ntessera_scheduler_clients 1\n") != std::string::npos;
  })) << body;
  EXPECT_EQ(scheduler.wait_exit(300ms), -1) << "the scheduler exited:\n" << read_text(log);
}

// A worker started with --name is called so in the scheduler's log, and with
// --local-directory spills there (lz4 files with their header, by default), and its results
// come back exact.
TEST(Processes, AWorkerTakesItsNameAndSpillsInItsLocalDirectory) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // A sanitized worker's shadow memory alone passes the pause threshold: no limit then,
  // and the name and the logs are checked without spilling.
  constexpr bool kSpills = false;
#else
  constexpr bool kSpills = true;
#endif
  tessera::testing::TempDir dir;
  const auto file = dir.path() / "scheduler.json";
  const std::string log = dir.file("scheduler.log"), spill = dir.file("spill");
  std::filesystem::create_directories(spill);
  Process scheduler({TESSERA_SCHEDULER_PROGRAM, "--address", "tcp://127.0.0.1:0",
                     "--scheduler-file", file.string(), "--http", ""},
                    log);
  const std::string address = wait_for_address(file);
  ASSERT_FALSE(address.empty()) << read_text(log);
  Process worker({TESSERA_WORKER_PROGRAM, address, "--name", "alpha", "--nthreads", "1",
                  "--no-nanny", "--preload", TESSERA_TEST_OPS, "--memory-limit",
                  kSpills ? "256MiB" : "0", "--local-directory", spill});
  {
    tessera::Client client(address, {.name = "tester", .set_as_default = false});
    constexpr int64_t kBlock = 1 << 21;  // 16 MiB of doubles
    std::vector<int64_t> seeds(16);      // 256 MiB in all; 60% of that stays in memory
    std::iota(seeds.begin(), seeds.end(), 0);
    auto blocks = client.map(ptest_block, seeds, std::vector<int64_t>(seeds.size(), kBlock));
    ASSERT_TRUE(tessera::wait(blocks, 60000ms));
    size_t files = 0;
    for (const auto& f : std::filesystem::recursive_directory_iterator(spill)) {
      if (!f.is_regular_file()) continue;
      ++files;
      EXPECT_TRUE(f.path().parent_path().filename().string().starts_with("tessera-worker-"))
          << f.path();
      std::ifstream in(f.path(), std::ios::binary);
      char head[5] = {};
      in.read(head, 5);
      EXPECT_EQ(std::string(head, 5), std::string("TSPL\x01", 5)) << "lz4 by default";
    }
    if (kSpills) {
      EXPECT_GE(files, 6U);
    }
    tessera::testing::expect_block_totals(client, blocks, seeds, kBlock, 60000ms);
  }
  EXPECT_TRUE(eventually(
      [&] { return read_text(log).find("client tester left: closed") != std::string::npos; }));
  const std::string text = read_text(log);
  EXPECT_NE(text.find("[info] worker alpha joined: 1 thread, data at tcp://127.0.0.1:"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("[info] client tester connected"), std::string::npos) << text;
}
