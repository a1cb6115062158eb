// Addresses across machines: which of this machine's addresses a peer elsewhere can reach.
//
// A server bound to every interface ("tcp://0.0.0.0:8786") cannot tell peers that address,
// and a worker's data server on loopback cannot be reached from another machine. As Dask
// does, a worker listens by default on the address of the interface that routes to its
// scheduler (loopback for a scheduler on loopback), and a server bound to every interface
// is announced under this machine's outward address.
#pragma once

#include <string>
#include <string_view>

#include "comm/address.hpp"

namespace tessera::distributed {

using comm::is_wildcard_host;
using comm::split_tcp_address;
using comm::TcpAddress;

// The IPv4 address of this machine's interface that routes to `host` (an IPv4 address or
// a name; no packet is sent). SchedulerError naming the host if it does not resolve or no
// route leads there.
std::string local_ip_towards(const std::string& host);

// Where a worker's data server listens by default for a scheduler at `host`: this machine's
// address towards it, except that a host *name* (not an address, not "localhost") that
// resolves to loopback (Debian maps a machine's own name to 127.0.1.1), or does not resolve
// yet, gives this_machine_ip(), so that peers on other machines still reach the worker;
// `note` then says why.
std::string worker_listen_ip(const std::string& host, std::string& note);

// The IPv4 address of the interface named `name` ("eth0", "ib0"); ValueError listing the
// interfaces that have one if it has none.
std::string interface_ip(const std::string& name);

// This machine's address for peers on other machines: the source address of its default
// route, else its first non-loopback IPv4 interface that is up, else 127.0.0.1.
std::string this_machine_ip();

// What peers are told for a server bound at `bound` (as comm::Server::address() reports
// it): the same, unless its host is every interface's, which becomes this machine's address
// towards `towards_host` (or this_machine_ip() when that is empty).
std::string contact_address(const std::string& bound, const std::string& towards_host = {});

}  // namespace tessera::distributed
