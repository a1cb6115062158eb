// tcp://host:port addresses, as the transport binds and connects them.
#pragma once

#include <string>
#include <string_view>

namespace tessera::comm {

struct TcpAddress {
  std::string host;  // as written (an IPv4 address, a name, "*" or "0.0.0.0")
  std::string port;  // digits, or "*"
};

// Splits "tcp://host:port"; ValueError naming `what` and the address if it is not one.
TcpAddress split_tcp_address(const std::string& address, std::string_view what);

// Whether `host` means every interface ("*", "0.0.0.0" or empty).
bool is_wildcard_host(std::string_view host);

}  // namespace tessera::comm
