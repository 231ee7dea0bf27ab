// shardgate: a TLS-terminating endpoint proxy for Redis databases.
//   shardgate --config FILE [--check-config]
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "proxy/check_certs.h"
#include "proxy/config.h"
#include "proxy/logging.h"
#include "proxy/server.h"

namespace {

constexpr const char* kUsage =
    "usage: shardgate --config FILE [--check-config]\n"
    "       shardgate --check-certs DIR [--config FILE]\n"
    "       shardgate --version | --help\n"
    "\n"
    "  -c, --config FILE   YAML configuration (see conf/examples/annotated.yaml)\n"
    "  -t, --check-config  validate the configuration, print what is wrong, exit 0 or 1\n"
    "      --check-certs DIR  validate a certificate directory (pair, chain, dates,\n"
    "                      a TLS handshake in memory) and print what would be served;\n"
    "                      with --config, under that file's TLS policy. Touches nothing.\n"
    "  -V, --version       print the version\n"
    "  -h, --help          print this help\n"
    "\n"
    "Signals: SIGHUP re-reads the TLS settings and certificates (file changes in\n"
    "cert_dir are picked up by themselves); SIGTERM/SIGINT stop\n"
    "accepting, let connections finish (drain_timeout_ms), and exit 0.\n";

// Each client holds two descriptors (its socket and its shard's), so the
// usual soft limit of 1024 would cap a proxy near 500 clients. Raise the soft
// limit to the hard one, as redis-server does for maxclients.
void raiseFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  rlim_t before = lim.rlim_cur;
  lim.rlim_cur = lim.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &lim) == 0) {
    spdlog::info("raised the open-file limit from {} to {}", before, lim.rlim_max);
  } else {
    spdlog::warn("open-file limit {} (could not raise it to {}): at most about {} clients", before,
                 lim.rlim_max, before / 2);
  }
}

int usageError(const std::string& message) {
  std::fprintf(stderr, "shardgate: %s\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string check_certs_dir;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "-V" || arg == "--version") {
      std::printf("shardgate %s\n", SHARDGATE_VERSION);
      return 0;
    }
    if (arg == "-t" || arg == "--check-config") {
      check_only = true;
    } else if (arg == "-c" || arg == "--config") {
      if (i + 1 >= argc) return usageError(std::string(arg) + " needs a file name");
      config_path = argv[++i];
    } else if (arg == "--check-certs") {
      if (i + 1 >= argc) return usageError("--check-certs needs a directory");
      check_certs_dir = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = std::string(arg.substr(9));
    } else {
      return usageError("unknown argument \"" + std::string(arg) + "\"");
    }
  }
  if (config_path.empty() && check_certs_dir.empty()) return usageError("--config FILE is required");
  if (!check_certs_dir.empty() && config_path.empty()) {
    return shardgate::proxy::checkCertDir(check_certs_dir, shardgate::tls::TlsPolicy{}, stdout, stderr);
  }

  auto config = shardgate::proxy::loadConfig(config_path);
  if (!config) {
    std::fprintf(stderr, "shardgate: %s\n", config.message().c_str());
    return 1;
  }
  if (!check_certs_dir.empty()) {
    return shardgate::proxy::checkCertDir(check_certs_dir, config->tls.policy, stdout, stderr);
  }
  if (check_only) {
    if (auto st = shardgate::proxy::checkServable(*config); !st) {
      std::fprintf(stderr, "shardgate: %s\n", st.message().c_str());  // "FILE:LINE: key: problem"
      return 1;
    }
    std::printf("%s: configuration is valid\n", config_path.c_str());
    return 0;
  }
  if (auto st = shardgate::proxy::setupLogging(config->log_level); !st) {
    std::fprintf(stderr, "shardgate: %s\n", st.message().c_str());
    return 1;
  }
  spdlog::info("shardgate {} starting with {}", SHARDGATE_VERSION, config_path);
  raiseFileLimit();
  auto server = shardgate::proxy::Server::create(std::move(*config));
  if (!server) {
    spdlog::error("{}", server.message());
    return 1;
  }
  return (*server)->run();
}
