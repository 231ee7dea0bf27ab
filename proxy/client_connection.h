// ClientConnection: one client socket (TLS or plain) and, for a one-shard
// database, the backend socket it is forwarded to. Bytes flow both ways once
// the handshake is done; each direction has a WriteQueue, and a direction
// that cannot drain stops reading on the other side (backpressure).
//
// The shard connection is opened by the client's first command. A multiplexed
// database (several shards, or a password) has no shard socket here: its
// plaintext goes to a MultiplexSession, which uses the worker's shared links.
//
//   client ─► onClientRead ─► TlsSession::feed ─► to_backend_ ─► shard
//   shard  ─► onBackendRead ─► TlsSession::encrypt ─► to_client_ ─► client
//
// Lifetime: the object owns itself. closeNow() closes its three handles and
// the object is deleted in the last close callback, nowhere else; callbacks
// that arrive while closing see closing_ and do nothing.
//
// Ending: when one side ends, everything it sent before is delivered to the
// other side, then the other side is closed. A client EOF half-closes the
// shard (so replies still in flight come back); a shard EOF flushes its last
// bytes and one -ERR line naming the shard to the client, then closes.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "proxy/database.h"
#include "proxy/multiplex_session.h"
#include "proxy/reply_sink.h"
#include "net/write_queue.h"
#include "tls/tls_session.h"

namespace shardgate::proxy {

class Worker;

class ClientConnection final : public ReplySink {
 public:
  // Serves fd, a socket just accepted (non-blocking); on failure nothing leaks.
  static void accept(Worker& worker, const Database& db, int fd);

  // Shutdown drain: closes the connection if no request is in flight.
  void closeIfIdle(uint64_t now_ms);
  void closeNow();

  // The worker's intrusive list of live connections.
  ClientConnection* prev = nullptr;
  ClientConnection* next = nullptr;

  // Multiplexed path (ReplySink): replies are appended to replyOut(), then
  // replyReady() puts the connection on the worker's flush list;
  // flushReplies() encrypts and writes them once per loop turn, however many
  // replies arrived.
  void flushReplies();
  // Periodic upkeep of the multiplexed path (idle private shard connections).
  void closeIdleLinks(uint64_t now_ms) {
    if (multiplex_ && !closing_) multiplex_->closeIdleLinks(now_ms);
  }

 private:
  // ReplySink: a lent buffer only while replies wait; the flush list.
  void lendReplyBuffer(ByteBuffer& into) override;
  void onReplyReady() override;

  ClientConnection(Worker& worker, const Database& db);
  ~ClientConnection() = default;

  uv_stream_t* clientStream() { return reinterpret_cast<uv_stream_t*>(&client_); }
  uv_stream_t* backendStream() { return reinterpret_cast<uv_stream_t*>(&backend_); }

  void start();
  void connectBackend();
  void onClientData(const uint8_t* data, size_t len);
  void onClientEnd(bool clean);
  void onBackendData(const uint8_t* data, size_t len);
  void onBackendEnd(int status);
  void onConnected(int status);
  void onHandshakeDone();
  void onHandshakeFailed(std::string_view reason);
  void refusePlaintext();
  void onTimer();

  void toBackend(const uint8_t* data, size_t len);
  void toClient(const uint8_t* data, size_t len);
  void sendToClient(const uint8_t* data, size_t len);
  void sendErrorLine(const std::string& line);
  void shutdownBackend();
  void closeAfterFlush();

  void updateReading();
  bool clientReadAllowed() const;
  bool backendReadAllowed() const;
  std::string peerName();

  static void onClientRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onBackendRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onToClientDrained(void* self, int status);
  static void onToBackendDrained(void* self, int status);

  Worker& worker_;
  const Database& db_;
  uv_tcp_t client_{};
  uv_tcp_t backend_{};
  uv_timer_t timer_{};  // handshake deadline, then the flush-before-close deadline
  std::unique_ptr<tls::TlsSession> tls_;
  std::unique_ptr<MultiplexSession> multiplex_;  // several shards or a password
  net::WriteQueue to_client_;
  net::WriteQueue to_backend_;
  uint64_t last_activity_ms_ = 0;
  int open_handles_ = 0;

  bool handshake_done_ = false;
  bool tls_started_ = false;  // the client's first bytes were looked at
  bool backend_connecting_ = false;
  bool backend_connected_ = false;
  bool backend_failed_ = false;
  bool backend_eof_ = false;
  bool backend_shutdown_ = false;
  bool client_eof_ = false;
  bool client_dead_ = false;  // cannot be written to any more
  bool client_reading_ = false;
  bool backend_reading_ = false;
  bool awaiting_reply_ = false;
  bool close_after_flush_ = false;
  bool closing_ = false;
};

}  // namespace shardgate::proxy
