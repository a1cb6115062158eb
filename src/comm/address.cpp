#include "comm/address.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "tessera/core/error.hpp"

namespace tessera::comm {

TcpAddress split_tcp_address(const std::string& address, std::string_view what) {
  constexpr std::string_view scheme = "tcp://";
  const auto bad = [&](std::string_view why) {
    return ValueError(fmt::format("{} '{}' is not tcp://host:port: {}", what, address, why));
  };
  if (!address.starts_with(scheme)) throw bad("it does not start with tcp://");
  const std::string rest = address.substr(scheme.size());
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) throw bad("no port");
  TcpAddress out{rest.substr(0, colon), rest.substr(colon + 1)};
  if (out.port.empty()) throw bad("no port");
  if (out.port != "*" &&
      !std::all_of(out.port.begin(), out.port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw bad("the port is not a number");
  if (out.host.find(':') != std::string::npos || out.host.starts_with('['))
    throw bad("IPv6 addresses are not supported");
  return out;
}

bool is_wildcard_host(std::string_view host) {
  return host.empty() || host == "*" || host == "0.0.0.0";
}

}  // namespace tessera::comm
