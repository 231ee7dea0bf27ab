// Stream: one connection's bytes, in order, to and from exactly one owner.
// Plain TCP (TcpStream) and TLS (TlsStream, over any other stream) are two
// implementations of this one interface, so a session never asks which it
// has: it writes plaintext and is handed plaintext.
//
//   owner ─write()──► Stream ─► (TLS records) ─► socket
//   owner ◄─onStreamData()── Stream ◄─ (TLS records) ◄─ socket
//
// Ownership: a stream owns itself. close() detaches the owner at once (no
// callback reaches it afterwards) and the stream frees itself after its
// socket is closed, however long that takes; the owner may be gone by then.
// The calls per stream are per read or write batch, never per command.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/counter.h"

namespace shardgate::net {

// What a stream tells its owner. Every callback may close the stream; the
// stream checks for that before it does anything more.
class StreamOwner {
 public:
  virtual ~StreamOwner() = default;

  // Bytes from the peer, borrowed until the call returns (they sit in a
  // buffer the loop lends to every stream in turn).
  virtual void onStreamData(const uint8_t* data, size_t len) = 0;
  // The peer ended its side: UV_EOF for a clean end (a FIN; over TLS, the
  // close_notify or the FIN), another libuv error for a broken connection.
  virtual void onStreamEnd(int status) = 0;
  // Everything written has reached the kernel (0), or a write failed (< 0:
  // what was queued is dropped).
  virtual void onStreamDrained(int status) = 0;
  // Streams made by IoDriver::connect: the connection is up (0) or failed.
  virtual void onStreamConnected(int /*status*/) {}
  // shutdownWrite() finished (0) or failed.
  virtual void onStreamShutdown(int /*status*/) {}

  // TLS streams only.
  // Server role: the first bytes, before TLS sees them. Returning true
  // means the owner dealt with them (TLS never sees them), e.g. a peer that
  // speaks plaintext is answered with writeClear() and closed.
  virtual bool onStreamFirstBytes(const uint8_t* /*data*/, size_t /*len*/) { return false; }
  virtual void onStreamHandshake() {}
  // The TLS session failed (during the handshake or after it); an alert for
  // the peer is already queued. The stream is still open: the owner closes.
  virtual void onStreamTlsFailed() {}
};

class Stream {
 public:
  using ClosedFn = void (*)(void* arg);

  virtual void setOwner(StreamOwner* owner) = 0;
  // Reading is off until asked for; an owner that cannot take more (its
  // other side is backed up) turns it off: that is the backpressure.
  virtual void setReading(bool on) = 0;
  // Queues bytes for the peer. Returns 0, or a libuv error (the connection
  // is broken; nothing more will be written). Before a connect completes
  // the bytes are held and written once it does.
  virtual int write(const uint8_t* data, size_t len) = 0;
  // No write in flight and nothing queued.
  virtual bool writeIdle() const = 0;
  virtual size_t writeQueued() const = 0;
  // Drops what is queued (the peer is gone).
  virtual void discardWrites() = 0;
  // Half-close: the peer reads an end once what was written before has
  // been delivered; reading goes on. Returns 0 or a libuv error; the result
  // of the shutdown itself arrives as onStreamShutdown().
  virtual int shutdownWrite() = 0;
  // Ends the session at the protocol level before a close: TLS's
  // close_notify (when the session is open); nothing for plain TCP.
  // Returns 0 or the libuv error of writing it.
  virtual int closeNotify() { return 0; }
  // Detaches the owner and closes; closed(arg), if given, runs once the
  // socket is closed and the stream freed. Idempotent.
  virtual void close(ClosedFn closed = nullptr, void* arg = nullptr) = 0;

  // "127.0.0.1:5000", "[::1]:5000", or "?" when unknown.
  virtual std::string peerName() const = 0;
  // Bytes the kernel received that were not read yet (one ioctl): for a
  // watchdog about to give up on a silent peer.
  virtual size_t bytesWaiting() const = 0;
  // Every byte read from the socket (over TLS: ciphertext, handshake
  // included) is added to counter, which must outlive the stream's owner.
  virtual void countBytesIn(Counter* counter) = 0;

 protected:
  virtual ~Stream() = default;  // freed by close() only
};

}  // namespace shardgate::net
