// ShardLink: what a multiplexed session needs from a connection to one shard:
// queue a command whose reply answers part of a request, know whether the
// shard is up, and pass the client's EOF on. BackendLink is the real one (a
// pipelined socket); tests use a fake that records frames and replies by hand.
//
// Replies come back through deliverReply / deliverFailure (multiplex_session.h),
// pub/sub frames through the push target's onPush. One virtual call per
// command sent; available() and shard() are plain reads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace shardgate::proxy {

class MultiplexSession;
struct Request;

class ShardLink {
 public:
  virtual ~ShardLink() = default;
  ShardLink(const ShardLink&) = delete;
  ShardLink& operator=(const ShardLink&) = delete;

  uint16_t shard() const { return shard_; }
  // False while the shard is known to be down: answer the client at once.
  bool available() const { return !failing_; }
  // A replica link (read_from replica_preferred): whether a read may go
  // to it now (clock in microseconds). False also while it is being
  // (re)checked -- calling this may start that check.
  virtual bool readable(uint64_t now_us) {
    (void)now_us;
    return !failing_;
  }
  // "127.0.0.1:7001", as error lines name the shard.
  virtual const std::string& address() const = 0;
  // Why the last connection failed ("connection refused"), for error lines.
  virtual const std::string& failure() const = 0;

  // Queues one command (bytes of complete RESP requests) whose reply is part
  // `part` of request r; r == nullptr: the reply is dropped (the proxy's own).
  virtual void send(std::string_view frame, Request* r, uint16_t part) = 0;
  // Queues a command whose replies nobody waits for: they reach the push
  // target (pub/sub subscriptions, whose confirmations are push frames).
  virtual void sendUnmatched(std::string_view frame) = 0;
  // One more reply on the way that is dropped (commands sent inside one
  // send() frame beyond its first).
  virtual void expectDropped() = 0;
  // Pub/sub: frames with no request waiting go to this session.
  virtual void setPushTarget(MultiplexSession* s) = 0;
  // RESP3: push frames ('>') go to the push target even while replies are awaited.
  virtual void setOutOfBandPushes(bool on) = 0;
  // Nothing queued, nothing awaited.
  virtual bool idle() const = 0;
  virtual uint64_t lastUsedMs() const = 0;
  // Connected or connecting: a close will be reported (onPrivateLinkLost).
  virtual bool open() const = 0;
  // Passes a client's EOF on once what was queued is written.
  virtual void closeWrite() = 0;
  virtual bool writeClosed() const = 0;

 protected:
  explicit ShardLink(uint16_t shard) : shard_(shard) {}

  uint16_t shard_;
  bool failing_ = false;  // the implementation's: the shard is known to be down
};

}  // namespace shardgate::proxy
