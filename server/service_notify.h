// ServiceNotify: tells the service manager where the process is in its life,
// by sd_notify's datagram protocol (libsystemd) to the socket named in
// $NOTIFY_SOCKET, which systemd sets for a Type=notify unit:
//
//   start:   bind every listener, start every worker, write pid_file,
//            install the signal handlers          -> READY=1
//   SIGHUP:  RELOADING=1 + MONOTONIC_USEC -> re-read config and certificates
//                                                  -> READY=1
//   SIGTERM: STOPPING=1 -> drain -> exit
//
// each with a STATUS= line that `systemctl status` shows. Without
// $NOTIFY_SOCKET (not started by systemd) nothing is sent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace shardgate::server {

class ServiceNotify {
 public:
  void ready(std::string_view status);
  // MONOTONIC_USEC lets a Type=notify-reload manager (systemd 253 and later)
  // tell this reload from an earlier one.
  void reloading(std::string_view status);
  void stopping(std::string_view status);
  void status(std::string_view status);

  // The datagrams above, as sent: "KEY=VALUE" lines. A status is one line:
  // a newline in it would start another assignment, so it becomes a space.
  static std::string message(std::string_view state, std::string_view status);
  static std::string reloadingMessage(uint64_t monotonic_usec, std::string_view status);

 private:
  void send(const std::string& message);
  bool warned_ = false;
};

}  // namespace shardgate::server
