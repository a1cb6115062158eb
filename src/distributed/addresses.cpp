#include "distributed/addresses.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::distributed {

namespace {

std::string ip_text(const in_addr& a) {
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a, text, sizeof text);
  return text;
}

// The source address the kernel would use for a datagram to `to` (connect() on a UDP
// socket sends nothing); empty with `why` set if there is no route.
std::string source_address(const sockaddr_in& to, std::string& why) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    why = std::strerror(errno);
    return {};
  }
  std::string out;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0) {
    sockaddr_in self{};
    socklen_t len = sizeof self;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) == 0 &&
        self.sin_addr.s_addr != htonl(INADDR_ANY)) {
      out = ip_text(self.sin_addr);
    } else {
      why = "no source address";
    }
  } else {
    why = std::strerror(errno);
  }
  ::close(fd);
  return out;
}

// This machine's IPv4 interfaces that are up: (name, address).
std::vector<std::pair<std::string, std::string>> interfaces() {
  std::vector<std::pair<std::string, std::string>> out;
  ifaddrs* all = nullptr;
  if (::getifaddrs(&all) != 0) return out;
  std::unique_ptr<ifaddrs, decltype(&::freeifaddrs)> owner(all, &::freeifaddrs);
  for (const ifaddrs* i = all; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    if ((i->ifa_flags & IFF_UP) == 0) continue;
    out.emplace_back(i->ifa_name,
                     ip_text(reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr));
  }
  return out;
}

}  // namespace

std::string local_ip_towards(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), "9", &hints, &found); rc != 0 || !found) {
    throw SchedulerError(fmt::format("cannot resolve '{}' to an IPv4 address: {}", host,
                                     rc != 0 ? ::gai_strerror(rc) : "no address"));
  }
  sockaddr_in to{};
  std::memcpy(&to, found->ai_addr, sizeof to);
  ::freeaddrinfo(found);
  if ((ntohl(to.sin_addr.s_addr) >> 24) == 127) return "127.0.0.1";
  std::string why;
  std::string ip = source_address(to, why);
  if (ip.empty())
    throw SchedulerError(fmt::format("no route from this machine to '{}': {}", host, why));
  return ip;
}

std::string worker_listen_ip(const std::string& host, std::string& note) {
  in_addr literal{};
  const bool is_name = ::inet_pton(AF_INET, host.c_str(), &literal) != 1 && host != "localhost";
  std::string ip;
  try {
    ip = local_ip_towards(host);
  } catch (const SchedulerError& e) {
    if (!is_name) throw;
    ip = this_machine_ip();
    note = fmt::format("{}; listening on {}, this machine's address", e.what(), ip);
    return ip;
  }
  if (is_name && ip.starts_with("127.")) {
    const std::string outward = this_machine_ip();
    if (outward != ip) {
      note = fmt::format(
          "the scheduler's host name '{}' resolves to loopback here; listening on {}, this "
          "machine's address, so that workers and clients elsewhere reach this one",
          host, outward);
    }
    return outward;
  }
  return ip;
}

std::string interface_ip(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& [n, ip] : interfaces()) {
    if (n == name) return ip;
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  throw ValueError(fmt::format("interface '{}' has no IPv4 address that is up (those that do: {})",
                               name,
                               names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
}

std::string this_machine_ip() {
  sockaddr_in outward{};
  outward.sin_family = AF_INET;
  outward.sin_port = htons(9);
  ::inet_pton(AF_INET, "192.0.2.1", &outward.sin_addr);  // TEST-NET-1: only its route matters
  std::string why;
  if (std::string ip = source_address(outward, why); !ip.empty()) return ip;
  for (const auto& [name, ip] : interfaces()) {
    if (!ip.starts_with("127.")) return ip;
  }
  return "127.0.0.1";
}

std::string contact_address(const std::string& bound, const std::string& towards_host) {
  if (!bound.starts_with("tcp://")) return bound;
  const TcpAddress a = split_tcp_address(bound, "address");
  if (!is_wildcard_host(a.host)) return bound;
  const std::string ip = towards_host.empty() ? this_machine_ip() : local_ip_towards(towards_host);
  return fmt::format("tcp://{}:{}", ip, a.port);
}

}  // namespace tessera::distributed
