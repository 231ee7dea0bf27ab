// A libuv loop for net/ tests: a driver on it, a listener on 127.0.0.1:0
// whose accepted sockets become streams (plain, or TLS in the server role),
// and a bounded way to run the loop until something happened.
#pragma once

#include <doctest/doctest.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/listen_socket.h"
#include "net/listener.h"
#include "net/tls_stream.h"
#include "net/uv_io_driver.h"

namespace shardgate::net::testing {

// Records what a stream says; optional reactions run inside the callbacks.
struct Recorder : StreamOwner {
  Stream* stream = nullptr;
  std::string got;
  bool ended = false;
  int end_status = 0;
  int connected = 1;  // 1: not yet told
  bool handshake = false;
  bool tls_failed = false;
  int drained = 0;  // onStreamDrained calls
  int drained_after_handshake = 0;
  int drained_status = 0;
  std::function<void(Recorder&)> on_data;
  std::function<void(Recorder&)> on_end;

  void onStreamData(const uint8_t* data, size_t len) override {
    got.append(reinterpret_cast<const char*>(data), len);
    if (on_data) on_data(*this);
  }
  void onStreamEnd(int status) override {
    ended = true;
    end_status = status;
    if (on_end) on_end(*this);
  }
  void onStreamDrained(int status) override {
    ++drained;
    if (handshake) ++drained_after_handshake;
    drained_status = status;
  }
  void onStreamConnected(int status) override { connected = status; }
  void onStreamHandshake() override { handshake = true; }
  void onStreamTlsFailed() override { tls_failed = true; }
  void write(const std::string& s) {
    REQUIRE(stream->write(reinterpret_cast<const uint8_t*>(s.data()), s.size()) == 0);
  }
};

class LoopFixture : public AcceptHandler {
 public:
  LoopFixture() {
    REQUIRE(uv_loop_init(&loop) == 0);
    // Keeps UV_RUN_ONCE from blocking forever when nothing else happens.
    uv_timer_init(&loop, &tick_);
    uv_timer_start(&tick_, [](uv_timer_t*) {}, 5, 5);
  }
  ~LoopFixture() override {
    closeAll();
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    // Every handle was closed and freed: streams free themselves.
    CHECK(uv_loop_close(&loop) == 0);
  }

  // Listens on 127.0.0.1:0; tls: accepted sockets get a server-role TlsStream.
  uint16_t listen(tls::TlsContextPtr tls = nullptr) {
    server_tls_ = std::move(tls);
    auto addr = parseSocketAddress("127.0.0.1:0", true);
    REQUIRE(addr.ok());
    auto fd = bindListenSocket(*addr);
    REQUIRE_MESSAGE(fd.ok(), (fd.ok() ? "" : fd.message()));
    auto port = boundPort(*fd);
    REQUIRE(port.ok());
    auto l = Listener::start(&loop, *fd, "test", *this);
    REQUIRE(l.ok());
    listener_ = *l;
    return *port;
  }

  void onAccepted(int fd) override {
    auto owner = std::make_unique<Recorder>();
    Stream* s = nullptr;
    REQUIRE(driver.adopt(fd, owner.get(), &s) == 0);
    if (server_tls_) {
      auto tls = TlsStream::create(driver, s, server_tls_, owner.get());
      REQUIRE(tls.ok());
      s = *tls;
    }
    owner->stream = s;
    if (on_accept) on_accept(*owner);
    s->setReading(true);
    accepted.push_back(std::move(owner));
  }

  // A stream connecting to 127.0.0.1:port, owned by owner.
  Stream* connect(uint16_t port, Recorder& owner) {
    auto addr = parseSocketAddress("127.0.0.1:" + std::to_string(port));
    REQUIRE(addr.ok());
    auto ss = toSockaddr(*addr);
    REQUIRE(ss.ok());
    Stream* s = nullptr;
    REQUIRE(driver.connect(reinterpret_cast<const sockaddr&>(*ss), &owner, ConnectOptions{}, &s) == 0);
    owner.stream = s;
    return s;
  }

  // Runs the loop until done() or about five seconds passed.
  bool runUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 1000 && !done(); ++i) uv_run(&loop, UV_RUN_ONCE);
    return done();
  }

  void closeAll() {
    if (listener_) listener_->close();
    listener_ = nullptr;
    for (auto& a : accepted) {
      if (a->stream) a->stream->close();
      a->stream = nullptr;
    }
  }

  uv_loop_t loop{};
  UvIoDriver driver{&loop};
  std::vector<std::unique_ptr<Recorder>> accepted;
  std::function<void(Recorder&)> on_accept;

 private:
  uv_timer_t tick_{};
  Listener* listener_ = nullptr;
  tls::TlsContextPtr server_tls_;
};

}  // namespace shardgate::net::testing
