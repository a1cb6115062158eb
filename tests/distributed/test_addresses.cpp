// Addresses across machines (distributed/addresses.hpp). The oracle for "an address of
// this machine" is the kernel: only a local address can be bound.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "distributed/addresses.hpp"
#include "tessera/core/error.hpp"
#include "test_support.hpp"

namespace td = tessera::distributed;
using tessera::testing::error_of;

namespace {

// Whether a TCP socket can bind `ip` (only this machine's addresses can be).
bool bindable(const std::string& ip) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) return false;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

TEST(Addresses, SplitsTcpAddressesAndSaysWhatIsWrong) {
  const auto a = td::split_tcp_address("tcp://10.1.2.3:8786", "x");
  EXPECT_EQ(a.host, "10.1.2.3");
  EXPECT_EQ(a.port, "8786");
  EXPECT_EQ(td::split_tcp_address("tcp://node-7.cluster:0", "x").host, "node-7.cluster");
  EXPECT_EQ(td::split_tcp_address("tcp://*:*", "x").port, "*");
  EXPECT_EQ(
      error_of<tessera::ValueError>([] { td::split_tcp_address("udp://h:1", "the address"); }),
      "the address 'udp://h:1' is not tcp://host:port: it does not start with tcp://");
  EXPECT_EQ(error_of<tessera::ValueError>([] { td::split_tcp_address("tcp://h", "x"); }),
            "x 'tcp://h' is not tcp://host:port: no port");
  EXPECT_EQ(error_of<tessera::ValueError>([] { td::split_tcp_address("tcp://h:", "x"); }),
            "x 'tcp://h:' is not tcp://host:port: no port");
  EXPECT_EQ(error_of<tessera::ValueError>([] { td::split_tcp_address("tcp://h:80a", "x"); }),
            "x 'tcp://h:80a' is not tcp://host:port: the port is not a number");
  EXPECT_EQ(error_of<tessera::ValueError>([] { td::split_tcp_address("tcp://[::1]:80", "x"); }),
            "x 'tcp://[::1]:80' is not tcp://host:port: IPv6 addresses are not supported");
  EXPECT_TRUE(td::is_wildcard_host("0.0.0.0"));
  EXPECT_TRUE(td::is_wildcard_host("*"));
  EXPECT_TRUE(td::is_wildcard_host(""));
  EXPECT_FALSE(td::is_wildcard_host("127.0.0.1"));
  EXPECT_FALSE(td::is_wildcard_host("localhost"));
}

TEST(Addresses, FindsThisMachinesAddressTowardsAPeer) {
  EXPECT_EQ(td::local_ip_towards("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(td::local_ip_towards("127.0.0.53"), "127.0.0.1");
  EXPECT_EQ(td::local_ip_towards("localhost"), "127.0.0.1");
  const std::string self = td::this_machine_ip();
  EXPECT_TRUE(bindable(self)) << self;
  EXPECT_FALSE(bindable("192.0.2.254")) << "the oracle binds anything";
  // Towards itself, this machine's address is that address.
  EXPECT_EQ(td::local_ip_towards(self), self.starts_with("127.") ? "127.0.0.1" : self);
  EXPECT_EQ(td::interface_ip("lo"), "127.0.0.1");
  const std::string no_such = error_of<tessera::ValueError>([] { td::interface_ip("tsr-none0"); });
  EXPECT_TRUE(
      no_such.starts_with("interface 'tsr-none0' has no IPv4 address that is up (those "
                          "that do: "))
      << no_such;
  EXPECT_NE(no_such.find("lo"), std::string::npos) << no_such;
  EXPECT_EQ(error_of<tessera::SchedulerError>([] {
              td::local_ip_towards("no-such-host.invalid");
            }).rfind("cannot resolve 'no-such-host.invalid' to an IPv4 address: ", 0),
            0U);
}

// A worker listens towards its scheduler, except when the scheduler's host *name* means
// loopback here (Debian's 127.0.1.1 for the machine's own name) or does not resolve: then on
// this machine's address, so that peers elsewhere reach it.
TEST(Addresses, AWorkerListensWherePeersElsewhereReachIt) {
  std::string note;
  EXPECT_EQ(td::worker_listen_ip("127.0.0.1", note), "127.0.0.1");
  EXPECT_EQ(td::worker_listen_ip("localhost", note), "127.0.0.1");
  EXPECT_EQ(note, "");
  const std::string self = td::this_machine_ip();
  EXPECT_EQ(td::worker_listen_ip(self, note), self.starts_with("127.") ? "127.0.0.1" : self);
  EXPECT_EQ(note, "");
  EXPECT_EQ(td::worker_listen_ip("no-such-host.invalid", note), self);
  EXPECT_TRUE(note.starts_with("cannot resolve 'no-such-host.invalid' to an IPv4 address: "))
      << note;
  EXPECT_NE(note.find("; listening on " + self + ", this machine's address"), std::string::npos)
      << note;
  // This machine's own name, where it resolves to loopback (as /etc/hosts often has it).
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string towards;
  try {
    towards = td::local_ip_towards(host);
  } catch (const tessera::SchedulerError&) {
    GTEST_SKIP() << "this machine's name '" << host << "' does not resolve";
  }
  if (!towards.starts_with("127.") || self.starts_with("127."))
    GTEST_SKIP() << "'" << host << "' resolves to " << towards << ", this machine to " << self;
  note.clear();
  EXPECT_EQ(td::worker_listen_ip(host, note), self);
  EXPECT_EQ(note, fmt::format("the scheduler's host name '{}' resolves to loopback here; "
                              "listening on {}, this machine's address, so that workers and "
                              "clients elsewhere reach this one",
                              host, self));
}

TEST(Addresses, AServerOnEveryInterfaceIsAnnouncedUnderAReachableAddress) {
  EXPECT_EQ(td::contact_address("tcp://127.0.0.1:5"), "tcp://127.0.0.1:5");
  EXPECT_EQ(td::contact_address("tcp://10.0.0.4:5", "127.0.0.1"), "tcp://10.0.0.4:5");
  EXPECT_EQ(td::contact_address("inproc://x"), "inproc://x");
  EXPECT_EQ(td::contact_address("tcp://0.0.0.0:5"), "tcp://" + td::this_machine_ip() + ":5");
  EXPECT_EQ(td::contact_address("tcp://0.0.0.0:5", "127.0.0.1"), "tcp://127.0.0.1:5");
  EXPECT_EQ(td::contact_address("tcp://*:5", "localhost"), "tcp://127.0.0.1:5");
}
