// Files the configuration names for TLS (client_ca, client_crl, shard_tls's
// ca/cert/key): a name in cert_dir or an absolute path, read whole, with an
// error that names the config key, its line and the path.
#pragma once

#include <optional>
#include <string>

#include "common/result.h"
#include "config/config.h"

namespace shardgate::server {

// file as a path: absolute as given, otherwise inside config.cert_dir.
std::string certDirPath(const config::Config& config, const std::string& file);

// Reads file (certDirPath) into text and sets path. The error says
// "FILE:LINE: key: path: cannot be read: reason" and carries the errno.
std::optional<Error> readCertDirFile(const config::Config& config, const std::string& key,
                                     const std::string& file, std::string& text, std::string& path);

}  // namespace shardgate::server
