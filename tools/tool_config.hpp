// What tessera-scheduler and tessera-worker share: --config FILE, read before the options'
// defaults are (they come from tessera/core/config.hpp: the environment, then the config
// files, then the built-in values; the command line overrides them all).
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <string_view>

#include "tessera/core/config.hpp"

namespace tessera::tools {

// Loads the file given as --config FILE or --config=FILE, if any (before CLI11 parses).
inline void load_config_flag(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg == "--config" && i + 1 < argc) {
      tessera::config::load_files(argv[i + 1]);
    } else if (arg.starts_with("--config=")) {
      tessera::config::load_files(arg.substr(9));
    }
  }
}

// The --config option itself, so that --help shows it and parsing accepts it.
inline void add_config_option(CLI::App& app, std::string& path) {
  app.add_option("--config", path,
                 "a TOML file of defaults: [scheduler], [worker], [client] and [curve] sections "
                 "(default: the files $TESSERA_CONFIG names, else ~/.config/tessera/tessera.toml "
                 "and /etc/tessera/tessera.toml); the environment (TESSERA_WORKER_NTHREADS for "
                 "worker.nthreads) overrides it, flags override both");
}

}  // namespace tessera::tools
