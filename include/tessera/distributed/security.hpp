// File: tessera/distributed/security.hpp — authentication and encryption of a cluster.
//
// A cluster secured with CURVE (ZeroMQ's CurveZMQ: elliptic-curve keys, every message
// encrypted) shares one key pair, the cluster key, made once by the tessera-keys program.
// The scheduler and the workers' data servers admit a connection only from a peer that
// proves it holds the cluster's secret key; a refused connection is logged by the server.
//
//   $ tessera-keys cluster.key                       # once; the file is made mode 0600
//   $ tessera-scheduler --curve-key cluster.key
//   $ tessera-worker tcp://host:8786 --curve-key cluster.key
//   tessera::Client client("tcp://host:8786",
//                          {.security = tessera::Security::from_file("cluster.key")});
//
// TESSERA_CURVE_KEY_FILE names the file for all three (a client without security of its
// own reads it). LocalCluster takes a Security too (Security::generate() for a fresh one),
// and a Client made from that cluster uses it.
#pragma once

#include <string>

namespace tessera {

struct Security {
  // Z85 text, 40 characters each; both empty: no security (plain TCP, for loopback).
  std::string public_key;
  std::string secret_key;

  bool enabled() const { return !secret_key.empty(); }

  // A fresh key pair.
  static Security generate();
  // The key pair in a file written by write() or tessera-keys. IOError naming the file if
  // it cannot be read or other users may read it; ValueError if the keys are malformed or
  // do not belong together.
  static Security from_file(const std::string& path);
  // from_file(TESSERA_CURVE_KEY_FILE), or no security if that variable is unset or empty.
  static Security from_environment();
  // Writes the key pair to `path`, readable by its owner only (IOError if it cannot, or if
  // the file exists and `overwrite` is false).
  void write(const std::string& path, bool overwrite = false) const;
};

}  // namespace tessera
