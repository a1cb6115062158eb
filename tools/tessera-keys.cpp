// tessera-keys: makes the key file that secures a cluster with CURVE.
//
//   tessera-keys cluster.key [--force]   # a new key pair, readable by its owner only
//   tessera-keys --check cluster.key     # reads it back and prints its public key
//
// Give the file to the scheduler, the workers and the clients (--curve-key FILE, or
// TESSERA_CURVE_KEY_FILE); whoever holds it can join the cluster, so copy it only over
// channels you trust.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "tessera/distributed/security.hpp"

int main(int argc, char** argv) {
  CLI::App app{"tessera-keys: makes a cluster key file (CURVE) for tessera-scheduler, "
               "tessera-worker and clients"};
  std::string path;
  bool force = false, check = false;
  app.add_option("file", path, "where to write the key pair")->required();
  app.add_flag("--force", force, "replace the file if it exists");
  app.add_flag("--check", check, "read an existing file and print its public key");
  app.set_version_flag("--version", std::string("tessera-keys ") + TESSERA_VERSION);
  CLI11_PARSE(app, argc, argv);
  try {
    tessera::Security keys;
    if (check) {
      keys = tessera::Security::from_file(path);
    } else {
      keys = tessera::Security::generate();
      keys.write(path, force);
    }
    std::printf("%s: public key %s\n", path.c_str(), keys.public_key.c_str());
  } catch (const std::exception& e) {
    const bool exists = !check && !force && std::string(e.what()).find("File exists") != std::string::npos;
    std::fprintf(stderr, "tessera-keys: %s%s\n", e.what(),
                 exists ? " (give --force to replace it; peers holding the old key are then refused)" : "");
    return 1;
  }
  return 0;
}
