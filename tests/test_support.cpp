#include "test_support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <span>

namespace tessera::testing {

namespace {

int64_t mix(int64_t seed, std::vector<int64_t> xs) {
  uint64_t h = static_cast<uint64_t>(seed) * 0x9e3779b97f4a7c15ull;
  for (int64_t x : xs) h = (h ^ static_cast<uint64_t>(x)) * 0x100000001b3ull + (h >> 29);
  return static_cast<int64_t>(h >> 1);
}
TESSERA_REGISTER_AS("tessera_test::mix", mix);

}  // namespace

bool send_raw_tcp(int port, std::string_view bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
                  ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  ::close(fd);
  return ok;
}

RandomDag random_dag(uint64_t seed, size_t n, size_t max_fan_in, double literal_fraction) {
  RandomDag dag;
  std::mt19937_64 rng(seed);
  std::vector<bool> has_dependent(n, false);
  const Op& op = get_op("tessera_test::mix");
  for (size_t i = 0; i < n; ++i) {
    Key key("node-" + std::to_string(seed), {static_cast<int64_t>(i)});
    std::uniform_real_distribution<double> u(0, 1);
    if (i == 0 || u(rng) < literal_fraction) {
      dag.graph.add(key, Task::literal(Value::of(static_cast<int64_t>(rng() % 1000))));
    } else {
      const size_t fan = 1 + rng() % max_fan_in;
      std::vector<Arg> refs;
      for (size_t k = 0; k < fan; ++k) {
        // Mostly recent tasks (deep graphs), sometimes any earlier one (wide fan-out).
        const size_t j = (u(rng) < 0.7) ? i - 1 - rng() % std::min<size_t>(i, 8) : rng() % i;
        refs.push_back(Arg::ref(dag.all[j]));
        has_dependent[j] = true;
      }
      dag.graph.add(key, Task::call(op, {Arg(Value::of(static_cast<int64_t>(i))),
                                         Arg::list(std::move(refs))}));
    }
    dag.all.push_back(key);
  }
  for (size_t i = 0; i < n; ++i) {
    if (!has_dependent[i]) dag.sinks.push_back(dag.all[i]);
  }
  return dag;
}

std::vector<int64_t> random_dag_expected(const RandomDag& dag) {
  std::vector<int64_t> out(dag.all.size());
  for (size_t i = 0; i < dag.all.size(); ++i) {
    const Task& t = dag.graph.at(dag.all[i]);
    if (!t.is_call()) {
      out[i] = t.args()[0].value().get<int64_t>();
      continue;
    }
    std::vector<int64_t> xs;
    for (const Arg& r : t.args()[1].list())
      xs.push_back(out[static_cast<size_t>(r.ref().index()[0])]);
    out[i] = mix(static_cast<int64_t>(i), xs);
  }
  return out;
}

std::vector<std::string> environment_of(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::vector<std::string> out;
  for (std::string e; std::getline(f, e, '\0');) out.push_back(std::move(e));
  return out;
}

}  // namespace tessera::testing
