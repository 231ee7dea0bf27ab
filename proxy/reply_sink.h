// ReplySink: where a multiplexed session puts its client's reply bytes. The
// session appends to replyOut() and calls replyReady(); the owner (the client
// connection, or a test) writes the bytes out later, once per loop turn
// however many replies arrived. Both calls are plain member functions: the
// owner hears of them once per batch (onReplyReady while not yet dirty,
// lendReplyBuffer while the buffer holds no memory), never once per reply.
#pragma once

#include "common/byte_buffer.h"

namespace shardgate::proxy {

class ReplySink {
 public:
  ByteBuffer& replyOut() {
    if (reply_out_.capacity() == 0) lendReplyBuffer(reply_out_);
    return reply_out_;
  }
  // Replies (or a reason to resume the session) are waiting: the owner
  // flushes once this turn. It clears `dirty` when it has.
  void replyReady() {
    if (!dirty) onReplyReady();
  }

  bool dirty = false;  // on the owner's flush list

 protected:
  ReplySink() = default;
  ~ReplySink() = default;
  ReplySink(const ReplySink&) = delete;
  ReplySink& operator=(const ReplySink&) = delete;

  // Gives the empty reply buffer memory (a lent one), or leaves it as is.
  virtual void lendReplyBuffer(ByteBuffer& into) = 0;
  virtual void onReplyReady() = 0;

  ByteBuffer reply_out_;
};

}  // namespace shardgate::proxy
