// shardgate: a TLS-terminating endpoint proxy for Redis databases.
//   shardgate --config FILE [--check-config]
#include <spdlog/spdlog.h>

#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "server/check_certs.h"
#include "server/cluster_settings.h"
#include "tls/password_hash.h"
#include "config/config.h"
#include "server/file_limit.h"
#include "common/logging.h"
#include "server/server.h"
#include "server/shard_tls_contexts.h"

namespace {

constexpr const char* kUsage =
    "usage: shardgate --config FILE [--check-config]\n"
    "       shardgate --check-certs DIR [--config FILE]\n"
    "       shardgate --hash-password\n"
    "       shardgate --version | --help\n"
    "\n"
    "  -c, --config FILE   YAML configuration (see conf/examples/annotated.yaml)\n"
    "  -t, --check-config  validate the configuration, print what is wrong, exit 0 or 1\n"
    "      --check-certs DIR  validate a certificate directory (pair, chain, dates,\n"
    "                      a TLS handshake in memory) and print what would be served;\n"
    "                      with --config, under that file's TLS policy. Touches nothing.\n"
    "      --hash-password  read a password from standard input (not echoed on a\n"
    "                      terminal) and print its hash for admin.users[].password_hash\n"
    "  -V, --version       print the version\n"
    "  -h, --help          print this help\n"
    "\n"
    "Signals: SIGHUP re-reads the TLS settings and certificates (file changes in\n"
    "cert_dir are picked up by themselves); SIGUSR1 reopens log_file (after\n"
    "logrotate moved it); SIGTERM/SIGINT stop accepting, let connections finish\n"
    "(drain_timeout_ms), and exit 0. Under systemd (Type=notify) it reports\n"
    "READY=1, RELOADING=1 and STOPPING=1 to $NOTIFY_SOCKET.\n";

// A client of plain forwarding holds two descriptors (its socket and its
// shard connection), so the usual soft limit of 1024 would cap the proxy near
// 500 clients: raise the limits at start and say how many clients fit.
void logFileLimitChange(const shardgate::server::FileLimitChange& c) {
  if (c.hard_wanted != 0 && c.hard_errno == 0) {
    spdlog::info("raised the open-file limit from {} (hard {}) to {}", c.soft_before, c.hard_before,
                 c.hard);
    return;
  }
  if (c.hard_wanted != 0) {
    bool root = geteuid() == 0;
    std::string hint;
    if (c.hard_errno == EPERM) {
      hint = root ? " (running as root without CAP_SYS_RESOURCE, as in most containers: raise it where "
                    "shardgate is started, e.g. LimitNOFILE= in its systemd unit or --ulimit nofile= "
                    "for docker run)"
                  : " (only root may raise it: LimitNOFILE= in the systemd unit, or ulimit -Hn as root)";
    }
    spdlog::log(root ? spdlog::level::warn : spdlog::level::info,
                "could not raise the hard open-file limit from {} to {}: {}{}", c.hard_before,
                c.hard_wanted, std::strerror(c.hard_errno), hint);
  }
  if (c.soft_errno != 0) {
    spdlog::warn("could not raise the open-file limit from {} to {}: {}", c.soft_before, c.hard_before,
                 std::strerror(c.soft_errno));
  } else if (c.soft != c.soft_before) {
    spdlog::info("raised the open-file limit from {} to {}", c.soft_before, c.soft);
  }
}

// After the listeners are open: how many clients the open-file limit leaves
// room for, as the descriptors they take differ by database kind.
void logClientRoom(uint64_t limit, uint64_t in_use, unsigned workers, bool any_plain,
                   bool any_multiplex, uint64_t shared_shard_links) {
  using shardgate::server::clientsThatFit;
  // Kept for the proxy itself: what each worker's loop opens when it starts
  // (its epoll and wake-up descriptors, counted before the workers ran), the
  // workers' shared shard connections, and a few for certificate reloads and
  // the like.
  constexpr uint64_t kOwnUse = 16;
  constexpr uint64_t kPerWorkerLoop = 2;
  uint64_t reserve = kOwnUse + kPerWorkerLoop * workers + shared_shard_links;
  uint64_t plain = clientsThatFit(limit, in_use, reserve, 2);
  uint64_t multiplexed = clientsThatFit(limit, in_use, reserve, 1);
  std::string room;
  if (any_plain && any_multiplex) {
    room = fmt::format("about {} clients of plain forwarding (2 descriptors each: the client's socket "
                       "and its shard connection), or {} multiplexed ones (1 each)", plain, multiplexed);
  } else if (any_plain) {
    room = fmt::format("about {} clients (2 descriptors each: the client's socket and its shard "
                       "connection)", plain);
  } else {
    room = fmt::format("about {} clients (1 descriptor each: shard connections are shared)", multiplexed);
  }
  spdlog::info("open-file limit {}, {} in use at start: room for {}; beyond that, new connections "
               "wait until descriptors are free", limit, in_use, room);
}

// --hash-password: one line from stdin, its hash on stdout. On a terminal
// the password is asked twice, without echo; from a pipe it is read as is
// (the trailing newline dropped).
int hashPassword() {
  const bool tty = ::isatty(STDIN_FILENO) == 1;
  termios saved{};
  auto readLine = [&](const char* prompt) -> std::optional<std::string> {
    if (tty) {
      std::fputs(prompt, stderr);
      std::fflush(stderr);
    }
    std::string line;
    int c;
    constexpr size_t kMaxPassword = 1024;
    while ((c = std::fgetc(stdin)) != EOF && c != '\n') {
      if (line.size() >= kMaxPassword) return std::nullopt;
      line += static_cast<char>(c);
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (tty) std::fputs("\n", stderr);
    if (c == EOF && line.empty()) return std::nullopt;
    return line;
  };
  if (tty && ::tcgetattr(STDIN_FILENO, &saved) == 0) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  auto first = readLine("Password: ");
  std::optional<std::string> second = first;
  if (tty && first) second = readLine("Again: ");
  if (tty) ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
  if (!first || first->empty()) {
    std::fputs("shardgate: --hash-password: no password given on standard input (or over 1024 bytes)\n", stderr);
    return 1;
  }
  if (*first != *second) {
    std::fputs("shardgate: --hash-password: the two passwords differ\n", stderr);
    return 1;
  }
  auto hash = shardgate::tls::hashPassword(*first);
  std::fill(first->begin(), first->end(), '\0');
  std::fill(second->begin(), second->end(), '\0');
  if (!hash) {
    std::fprintf(stderr, "shardgate: --hash-password: %s\n", hash.message().c_str());
    return 1;
  }
  std::printf("%s\n", hash->c_str());
  return 0;
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
    if (arg == "--hash-password") return hashPassword();
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
    return shardgate::server::checkCertDir(check_certs_dir, shardgate::tls::TlsPolicy{}, stdout, stderr);
  }

  auto config = shardgate::config::loadConfig(config_path);
  if (!config) {
    std::fprintf(stderr, "shardgate: %s\n", config.message().c_str());
    return 1;
  }
  if (!check_certs_dir.empty()) {
    return shardgate::server::checkCertDir(check_certs_dir, config->tls.policy, stdout, stderr);
  }
  if (check_only) {
    if (auto st = shardgate::server::checkServable(*config); !st) {
      std::fprintf(stderr, "shardgate: %s\n", st.message().c_str());  // "FILE:LINE: key: problem"
      return 1;
    }
    std::printf("%s: configuration is valid\n", config_path.c_str());
    // The TLS settings in effect, and where each comes from: the admin
    // API's persisted overrides win over the file.
    if (auto settings = shardgate::server::loadClusterSettings(config->cert_dir)) {
      for (const std::string& line : shardgate::server::describeEffective(*config, *settings)) {
        std::printf("  %s\n", line.c_str());
      }
    }
    // TLS to the shards: what each shard connection will be.
    if (auto shards = shardgate::server::checkShardTls(*config)) {
      for (const std::string& line : *shards) std::printf("  %s\n", line.c_str());
    }
    return 0;
  }
  if (auto st = shardgate::setupLogging(config->log_level, config->log_file); !st) {
    std::fprintf(stderr, "shardgate: %s%s\n", config->where("log_file").c_str(), st.message().c_str());
    return 1;
  }
  // Until the control loop handles it, a SIGUSR1 from logrotate would end
  // the process (its default action); the log file is current until then.
  std::signal(SIGUSR1, SIG_IGN);
  spdlog::info("shardgate {} starting with {}", SHARDGATE_VERSION, config_path);
  auto limit = shardgate::server::raiseOpenFileLimit();
  logFileLimitChange(limit);
  unsigned workers = config->effectiveWorkers();
  bool any_plain = false, any_multiplex = false;
  uint64_t shared_links = 0;
  for (const auto& db : config->databases) {
    (db.multiplex ? any_multiplex : any_plain) = true;
    // A cluster's masters are known only once discovered: its seeds stand in.
    const size_t shards = db.cluster ? db.cluster->seeds.size() : db.shards.size();
    if (db.multiplex) shared_links += uint64_t{workers} * shards;
  }
  auto server = shardgate::server::Server::create(std::move(*config));
  if (!server) {
    spdlog::error("{}", server.message());
    // The service manager's journal keeps stderr: why the start failed
    // belongs there too, not only in log_file.
    if (!shardgate::logFilePath().empty()) {
      std::fprintf(stderr, "shardgate: %s\n", server.message().c_str());
    }
    return 1;
  }
  logClientRoom(limit.soft, (*server)->openFilesAtStart(), workers, any_plain, any_multiplex,
                shared_links);
  return (*server)->run();
}
