// Configuration: the order of precedence (set(), environment, files in order, built-in
// default), the TOML subset, and every malformed-input message.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "test_support.hpp"

namespace config = tessera::config;
using namespace std::chrono_literals;
using tessera::testing::error_of;

namespace {

std::string write(const tessera::testing::TempDir& dir, const std::string& name,
                  const std::string& text) {
  const std::string path = dir.file(name);
  std::ofstream(path) << text;
  return path;
}

// Restores the default files (none) and no overrides when a test ends.
struct ConfigReset {
  ~ConfigReset() {
    config::load_files("");
    ::unsetenv("TESSERA_WORKER_NTHREADS");
  }
};

}  // namespace

TEST(Config, PrecedenceSetThenEnvironmentThenFilesInOrderThenDefault) {
  ConfigReset reset;
  tessera::testing::TempDir dir;
  const auto first = write(dir, "first.toml",
                           "# the site's file\n"
                           "[worker]\n"
                           "nthreads = 4            # per worker\n"
                           "memory-limit = \"8GiB\"\n"
                           "name = 'literal # not a comment'\n"
                           "\n"
                           "[client]\n"
                           "scheduler-timeout = 2.5\n"
                           "[curve]\n"
                           "key-file = \"/etc/tessera/cluster.key\"\n"
                           "top = 1\n");
  const auto second = write(dir, "second.toml",
                            "[worker]\nnthreads = 16\nnanny = false\nlisten = \"tcp://0.0.0.0:0\"\n");
  config::load_files(first + ":" + second);
  // An earlier file wins; a later one fills in what the earlier does not say.
  EXPECT_EQ(config::get("worker.nthreads"), "4");
  EXPECT_EQ(config::get_number("worker.nthreads", 1), 4);
  EXPECT_EQ(config::get_string("worker.listen", ""), "tcp://0.0.0.0:0");
  EXPECT_EQ(config::get_string("worker.memory-limit", "0"), "8GiB");
  EXPECT_EQ(config::get_string("worker.name", ""), "literal # not a comment");
  EXPECT_FALSE(config::get_bool("worker.nanny", true));
  EXPECT_EQ(config::get_seconds("client.scheduler-timeout", 30), 2500ms);
  EXPECT_EQ(config::get_string("curve.key-file", ""), "/etc/tessera/cluster.key");
  EXPECT_EQ(config::get("curve.top"), "1");
  // Not given anywhere: the built-in default.
  EXPECT_EQ(config::get("worker.death-timeout"), std::nullopt);
  EXPECT_EQ(config::get_seconds("worker.death-timeout", 60), 60000ms);
  // The environment beats the files; set() beats the environment.
  ::setenv("TESSERA_WORKER_NTHREADS", "8", 1);
  EXPECT_EQ(config::get_number("worker.nthreads", 1), 8);
  config::set("worker.nthreads", "2");
  EXPECT_EQ(config::get_number("worker.nthreads", 1), 2);
  config::set("worker.nthreads", std::nullopt);
  EXPECT_EQ(config::get_number("worker.nthreads", 1), 8);
  ::unsetenv("TESSERA_WORKER_NTHREADS");
  EXPECT_EQ(config::get_number("worker.nthreads", 1), 4);
  EXPECT_EQ(config::environment_name("worker.memory-limit"), "TESSERA_WORKER_MEMORY_LIMIT");
  EXPECT_EQ(config::environment_name("curve.key-file"), "TESSERA_CURVE_KEY_FILE");
}

TEST(Config, MalformedFilesAndValuesAreNamed) {
  ConfigReset reset;
  tessera::testing::TempDir dir;
  auto error_for = [&](const std::string& text) {
    const auto path = write(dir, "bad.toml", text);
    const std::string e = error_of<tessera::ValueError>([&] { config::load_files(path); });
    const std::string prefix = "config file " + path + ":";
    EXPECT_EQ(e.rfind(prefix, 0), 0U) << e;
    return e.substr(prefix.size());
  };
  EXPECT_EQ(error_for("[worker\n"), "1: a section header is [name]");
  EXPECT_EQ(error_for("[a b]\n"), "1: 'a b' is not a section name");
  EXPECT_EQ(error_for("[worker]\nnthreads 4\n"),
            "2: expected `key = value`, a [section] or a # comment");
  EXPECT_EQ(error_for("[worker]\nn threads = 4\n"), "2: 'n threads' is not a key name");
  EXPECT_EQ(error_for("x =\n"), "1: 'x' has no value");
  EXPECT_EQ(error_for("x = \"open\n"), "1: the string of 'x' is not closed");
  EXPECT_EQ(error_for("x = \"a\" b\n"), "1: text after the string of 'x'");
  EXPECT_EQ(error_for("x = eight\n"),
            "1: the value of 'x' must be a quoted string, a number or true/false, not eight");
  EXPECT_EQ(error_for("[w]\nx = 1\nx = 2\n"), "3: 'w.x' is given twice");
  EXPECT_NE(error_of<tessera::IOError>([&] { config::load_files(dir.file("none.toml")); })
                .find("cannot read the config file '" + dir.file("none.toml") + "'"),
            std::string::npos);
  // Values of the wrong type name the key and where the value came from.
  const auto path = write(dir, "typed.toml", "[worker]\nnthreads = \"many\"\nnanny = 3\n");
  config::load_files(path);
  EXPECT_EQ(error_of<tessera::ValueError>([] { config::get_number("worker.nthreads", 1); }),
            "config: worker.nthreads = 'many' (from " + path + ":2) is not a number");
  EXPECT_EQ(error_of<tessera::ValueError>([] { config::get_bool("worker.nanny", true); }),
            "config: worker.nanny = '3' (from " + path + ":3) is not true or false");
  ::setenv("TESSERA_WORKER_NTHREADS", "lots", 1);
  EXPECT_EQ(error_of<tessera::ValueError>([] { config::get_number("worker.nthreads", 1); }),
            "config: worker.nthreads = 'lots' (from TESSERA_WORKER_NTHREADS) is not a number");
  config::set("client.connect-timeout", "-1");
  EXPECT_EQ(
      error_of<tessera::ValueError>([] { config::get_seconds("client.connect-timeout", 10); }),
      "config: client.connect-timeout must be a number of seconds, 0 or more, not -1");
  config::set("client.connect-timeout", std::nullopt);
}
