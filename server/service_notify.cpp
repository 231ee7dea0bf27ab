#include "server/service_notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

namespace shardgate::server {

namespace {

uint64_t monotonicUsec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

std::string statusLine(std::string_view status) {
  std::string line = "STATUS=";
  for (char c : status) line += (c == '\n' || c == '\r') ? ' ' : c;
  return line;
}

}  // namespace

std::string ServiceNotify::message(std::string_view state, std::string_view status) {
  std::string out(state);
  if (!status.empty()) out += (out.empty() ? "" : "\n") + statusLine(status);
  return out;
}

std::string ServiceNotify::reloadingMessage(uint64_t monotonic_usec, std::string_view status) {
  return message("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec), status);
}

void ServiceNotify::ready(std::string_view status) { send(message("READY=1", status)); }

void ServiceNotify::reloading(std::string_view status) {
  send(reloadingMessage(monotonicUsec(), status));
}

void ServiceNotify::stopping(std::string_view status) { send(message("STOPPING=1", status)); }

void ServiceNotify::status(std::string_view status) { send(message("", status)); }

void ServiceNotify::send(const std::string& message) {
  // 0: $NOTIFY_SOCKET is unset (not under systemd), which is fine. Kept set:
  // every later state goes to the same socket.
  int rc = sd_notify(0, message.c_str());
  if (rc < 0 && !warned_) {
    // Once: a manager that cannot be told READY=1 times the start out,
    // which the log should explain.
    warned_ = true;
    spdlog::warn("cannot notify the service manager at $NOTIFY_SOCKET ({}): {}",
                 std::getenv("NOTIFY_SOCKET") ? std::getenv("NOTIFY_SOCKET") : "",
                 std::strerror(-rc));
  }
}

}  // namespace shardgate::server
