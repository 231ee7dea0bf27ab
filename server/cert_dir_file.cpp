#include "server/cert_dir_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace shardgate::server {

std::string certDirPath(const config::Config& config, const std::string& file) {
  if (!file.empty() && file[0] == '/') return file;
  return config.cert_dir + "/" + file;
}

std::optional<Error> readCertDirFile(const config::Config& config, const std::string& key,
                                     const std::string& file, std::string& text, std::string& path) {
  path = certDirPath(config, file);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;  // before anything below can change it
    Error e = makeError(config.where(key) + key + ": " + path + ": cannot be read: " + std::strerror(err));
    e.sys_errno = err;
    return e;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  text = buf.str();
  return std::nullopt;
}

}  // namespace shardgate::server
