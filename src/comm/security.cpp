#include "tessera/distributed/security.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <zmq.h>

#include "tessera/core/error.hpp"

namespace tessera {

namespace {

constexpr size_t kZ85KeyChars = 40;

// "name = value" from a key file's line, or "" if the line is not that name's.
std::string value_of(const std::string& line, const std::string& name) {
  if (line.rfind(name, 0) != 0) return {};
  const auto eq = line.find('=', name.size());
  if (eq == std::string::npos) return {};
  const auto first = line.find_first_not_of(" \t", eq + 1);
  if (first == std::string::npos) return {};
  const auto last = line.find_last_not_of(" \t\r");
  return line.substr(first, last - first + 1);
}

}  // namespace

Security Security::generate() {
  char pub[kZ85KeyChars + 1] = {};
  char sec[kZ85KeyChars + 1] = {};
  if (zmq_curve_keypair(pub, sec) != 0)
    throw IOError(fmt::format("cannot make a CURVE key pair: {}", zmq_strerror(zmq_errno())));
  return Security{pub, sec};
}

Security Security::from_file(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0)
    throw IOError(fmt::format("cannot read the key file '{}': {}", path, std::strerror(errno)));
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    throw IOError(fmt::format(
        "the key file '{}' may be read by other users (mode {:04o}); whoever holds it can join "
        "the cluster: chmod 600 '{}'",
        path, st.st_mode & 07777, path));
  }
  std::ifstream f(path);
  if (!f) throw IOError(fmt::format("cannot read the key file '{}'", path));
  Security s;
  std::string line;
  while (std::getline(f, line)) {
    if (auto v = value_of(line, "public-key"); !v.empty()) s.public_key = v;
    if (auto v = value_of(line, "secret-key"); !v.empty()) s.secret_key = v;
  }
  if (s.public_key.size() != kZ85KeyChars || s.secret_key.size() != kZ85KeyChars) {
    throw ValueError(fmt::format(
        "the key file '{}' holds no CURVE key pair (lines 'public-key = ' and 'secret-key = ' "
        "with 40 Z85 characters each; tessera-keys writes such a file)",
        path));
  }
  char derived[kZ85KeyChars + 1] = {};
  if (zmq_curve_public(derived, s.secret_key.c_str()) != 0 || s.public_key != derived) {
    throw ValueError(
        fmt::format("the key file '{}': its public key does not belong to its secret key", path));
  }
  return s;
}

Security Security::from_environment() {
  const char* path = std::getenv("TESSERA_CURVE_KEY_FILE");
  if (path == nullptr || *path == '\0') return {};
  return from_file(path);
}

void Security::write(const std::string& path, bool overwrite) const {
  if (!enabled()) throw ValueError("Security::write: there is no key pair to write");
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
  const int fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) {
    throw IOError(fmt::format("cannot write the key file '{}': {}", path, std::strerror(errno)));
  }
  fchmod(fd, 0600);  // an overwritten file keeps its old mode otherwise
  const std::string text = fmt::format(
      "# A tessera cluster key (CURVE). Keep it secret: whoever holds it can join the "
      "cluster.\npublic-key = {}\nsecret-key = {}\n",
      public_key, secret_key);
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok) throw IOError(fmt::format("cannot write the key file '{}'", path));
}

}  // namespace tessera
