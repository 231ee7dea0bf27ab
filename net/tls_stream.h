// TlsStream: TLS over another stream, in the server or the client role. It
// owns a TlsSession (memory BIOs, no I/O) and the transport stream it reads
// ciphertext from; its owner sees plaintext only.
//
//   transport ─ciphertext─► TlsSession::feed ─plaintext─► owner
//   owner ─plaintext─► TlsSession::encrypt ─ciphertext─► transport
//
// Server role: the first bytes go to the owner before TLS sees them
// (onStreamFirstBytes), so a peer speaking plaintext can be told so in
// plaintext (writeClear). Client role: the ClientHello is written at once
// (held by the transport until it connects), with SNI and, when the
// context verifies, the name the server's certificate must carry; what the
// owner writes before the handshake completes is held and sent after it.
//
// Lifetime: close() closes the transport; both are freed in its close
// callback, so a TlsStream outlives the call that closed it.
#pragma once

#include <memory>
#include <string>

#include "common/byte_buffer.h"
#include "common/result.h"
#include "net/io_driver.h"
#include "net/stream.h"
#include "tls/tls_context.h"
#include "tls/tls_session.h"

namespace shardgate::net {

class TlsStream final : public Stream, private StreamOwner {
 public:
  // Takes over transport (this stream becomes its owner). The role is the
  // context's. server_name: client role only (empty: no SNI, no name
  // check). On failure (OpenSSL out of memory, a name it refuses) transport
  // is left as it was, for the caller to close. resumption: client role
  // only; its session is offered and new ones are stored in it
  // (tls::TlsSession::useResumptionSlot).
  static Result<TlsStream*> create(IoDriver& io, Stream* transport, tls::TlsContextPtr ctx,
                                   StreamOwner* owner, const std::string& server_name = "",
                                   std::shared_ptr<tls::ResumptionSlot> resumption = nullptr);

  // Stream
  void setOwner(StreamOwner* owner) override { owner_ = owner; }
  void setReading(bool on) override { transport_->setReading(on); }
  int write(const uint8_t* data, size_t len) override;
  bool writeIdle() const override { return held_.empty() && transport_->writeIdle(); }
  size_t writeQueued() const override { return held_.size() + transport_->writeQueued(); }
  void discardWrites() override;
  int shutdownWrite() override;
  int closeNotify() override;
  void close(ClosedFn closed = nullptr, void* arg = nullptr) override;
  std::string peerName() const override { return transport_->peerName(); }
  size_t bytesWaiting() const override { return transport_->bytesWaiting(); }
  void countBytesIn(Counter* counter) override { transport_->countBytesIn(counter); }

  // Bytes written as they are, outside TLS: a refusal to a peer that never
  // started a handshake.
  int writeClear(const uint8_t* data, size_t len) { return transport_->write(data, len); }
  const tls::TlsSession& session() const { return *session_; }

 private:
  TlsStream(IoDriver& io, Stream* transport, std::unique_ptr<tls::TlsSession> session,
            StreamOwner* owner);
  ~TlsStream() override = default;

  // The transport's owner.
  void onStreamData(const uint8_t* data, size_t len) override;
  void onStreamEnd(int status) override;
  void onStreamDrained(int status) override;
  void onStreamConnected(int status) override;
  void onStreamShutdown(int status) override;

  int encryptAndWrite(const uint8_t* data, size_t len);
  int writeCipher(const ByteBuffer& cipher);

  IoDriver& io_;
  Stream* transport_;
  std::unique_ptr<tls::TlsSession> session_;
  StreamOwner* owner_;
  ByteBuffer held_;  // client role: plaintext written before the handshake completed
  ClosedFn closed_ = nullptr;
  void* closed_arg_ = nullptr;
  bool server_;
  bool first_bytes_seen_ = false;
  bool peer_closed_told_ = false;
  bool closing_ = false;
};

}  // namespace shardgate::net
