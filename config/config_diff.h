// ConfigDiff: which keys differ between the running configuration and a
// re-read one, each named by its path as the file writes it
// ("databases[0].shards", "workers"), and whether a running proxy can apply
// it (TLS policy, log level) or only a restart can (listeners, shards, limits).
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace shardgate::config {

struct ConfigChange {
  std::string key;  // "databases[1].listen"
  bool needs_restart = true;
};

// In file order. A listen address whose port is 0 in `after` matches the
// port the kernel picked for `before` (the running config records it): the
// file did not change.
std::vector<ConfigChange> diffConfigs(const Config& before, const Config& after);

}  // namespace shardgate::config
