// ClientConnection: the session of one client: its stream (TLS or plain,
// from net/) and, for a one-shard database, the shard stream its bytes are
// forwarded to. Bytes flow both ways once the handshake is done; a direction
// that cannot drain stops reading on the other side (backpressure).
//
// The shard connection is opened by the client's first command. A multiplexed
// database (several shards, or a password) has no shard stream here: its
// plaintext goes to a MultiplexSession, which uses the worker's shared links.
//
//   client stream ─► onStreamData (plaintext) ─► shard stream
//   shard stream  ─► ShardSide::onStreamData ─► client stream (encrypts)
//
// Lifetime: the object owns itself. closeNow() closes both streams (which
// free themselves once their sockets are closed) and leaves its deadline
// list; the object is deleted when the client stream's socket is closed
// (its close callback), so nothing on the stack still uses it; callbacks
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

#include "common/byte_buffer.h"
#include "net/stream.h"
#include "net/tls_stream.h"
#include "proxy/database.h"
#include "proxy/deadline_list.h"
#include "proxy/multiplex_session.h"
#include "proxy/reply_sink.h"

namespace shardgate::proxy {

class Worker;

// Its Deadline base is its place in the worker's deadline lists (the
// handshake's, then the flush-before-close).
class ClientConnection final : public ReplySink, public Deadline<ClientConnection>, private net::StreamOwner {
 public:
  // Serves fd, a socket just accepted (non-blocking); on failure nothing leaks.
  static void accept(Worker& worker, const Database& db, int fd);

  // Shutdown drain: closes the connection if no request is in flight.
  void closeIfIdle(uint64_t now_ms);
  void closeNow();
  // The worker's deadline timer: the handshake or the flush before a close
  // took too long.
  void onDeadline();

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
  // The owner of the shard stream (a stream has one owner; the client
  // stream's is the connection itself).
  struct ShardSide final : net::StreamOwner {
    explicit ShardSide(ClientConnection& c) : conn(c) {}
    void onStreamData(const uint8_t* data, size_t len) override { conn.onBackendData(data, len); }
    void onStreamEnd(int status) override { conn.onBackendEnd(status); }
    void onStreamDrained(int status) override { conn.onToBackendDrained(status); }
    void onStreamConnected(int status) override { conn.onBackendConnected(status); }
    void onStreamShutdown(int status) override { conn.onBackendShutdown(status); }
    void onStreamHandshake() override { conn.onBackendHandshake(); }
    void onStreamTlsFailed() override { conn.onBackendTlsFailed(); }
    ClientConnection& conn;
  };

  // ReplySink: a lent buffer only while replies wait; the flush list.
  void lendReplyBuffer(ByteBuffer& into) override;
  void onReplyReady() override;

  ClientConnection(Worker& worker, const Database& db);
  ~ClientConnection() override = default;

  // The client stream.
  void onStreamData(const uint8_t* data, size_t len) override;
  void onStreamEnd(int status) override;
  void onStreamDrained(int status) override;
  bool onStreamFirstBytes(const uint8_t* data, size_t len) override;
  void onStreamHandshake() override { onHandshakeDone(); }
  void onStreamTlsFailed() override;

  // fd: the accepted socket (a cluster database's face is its local address).
  void start(int fd);
  void connectBackend();
  void onClientEnd(bool clean);
  void onBackendData(const uint8_t* data, size_t len);
  void onBackendEnd(int status);
  void onToBackendDrained(int status);
  void onBackendShutdown(int status);
  void onBackendConnected(int status);
  void onBackendHandshake();
  void onBackendTlsFailed();
  // The shard connection is usable (TCP up, and over TLS the handshake done).
  void onBackendReady();
  // It could not be made: why is what the client's -ERR line and the log say.
  void onBackendFailed(const std::string& why);
  void onHandshakeDone();
  bool admitClientCertificate(const tls::TlsSession& session);
  void onHandshakeFailed(std::string_view reason);
  void refusePlaintext();
  void startDeadline(DeadlineKind kind, uint64_t ms);
  net::TlsStream& tlsStream() { return *static_cast<net::TlsStream*>(client_); }

  void toBackend(const uint8_t* data, size_t len);
  void toClient(const uint8_t* data, size_t len);
  void writeToClient(const uint8_t* data, size_t len);
  void clientWriteFailed(int rc);
  void sendErrorLine(const std::string& line);
  void shutdownBackend();
  void closeAfterFlush();

  void updateReading();
  bool clientReadAllowed() const;
  bool backendReadAllowed() const;
  bool clientWriteIdle() const { return client_ == nullptr || client_->writeIdle(); }
  bool backendWriteIdle() const { return backend_ == nullptr || backend_->writeIdle(); }
  std::string peerName() const { return client_ ? client_->peerName() : "?"; }

  Worker& worker_;
  const Database& db_;
  DbStats& db_stats_;  // this worker's counters of db_
  net::Stream* client_ = nullptr;  // a net::TlsStream when the database speaks TLS
  net::Stream* backend_ = nullptr;  // transparent path, from the first command on
  net::TlsStream* backend_tls_ = nullptr;  // backend_, when the shard has tls on
  ShardSide shard_side_{*this};
  std::unique_ptr<MultiplexSession> multiplex_;  // several shards or a password
  uint64_t last_activity_ms_ = 0;
  // The verified client certificate's subject (client_auth), for CLIENT
  // INFO / CLIENT LIST; empty when none.
  std::string cert_subject_;

  bool handshake_done_ = false;
  bool backend_connecting_ = false;
  bool backend_connected_ = false;
  bool backend_failed_ = false;
  bool backend_eof_ = false;
  bool backend_spoke_ = false;  // bytes came from the shard
  bool backend_tcp_connected_ = false;  // over TLS: TCP is up, the handshake under way
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
