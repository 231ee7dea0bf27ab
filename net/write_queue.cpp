#include "net/write_queue.h"

namespace shardgate::net {

int WriteQueue::send(uv_stream_t* stream, const uint8_t* data, size_t len) {
  if (len == 0) return 0;
  if (idle()) {
    uv_buf_t buf = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(data)),
                               static_cast<unsigned>(len));
    int n = uv_try_write(stream, &buf, 1);
    if (n == static_cast<int>(len)) return 0;
    if (n < 0 && n != UV_EAGAIN) return n;
    if (n > 0) {
      data += n;
      len -= static_cast<size_t>(n);
    }
  }
  pending_.append(data, len);
  return writing_ ? 0 : startWrite(stream);
}

int WriteQueue::flush(uv_stream_t* stream) {
  if (writing_ || pending_.empty()) return 0;
  return startWrite(stream);
}

int WriteQueue::startWrite(uv_stream_t* stream) {
  inflight_.swap(pending_);
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(inflight_.data()),
                             static_cast<unsigned>(inflight_.size()));
  if (req_ == nullptr) req_ = new uv_write_t;
  req_->data = this;
  int rc = uv_write(req_, stream, &buf, 1, &WriteQueue::onWrite);
  if (rc != 0) {
    inflight_.clear();
    return rc;
  }
  writing_ = true;
  return 0;
}

void WriteQueue::onWrite(uv_write_t* req, int status) {
  auto* self = static_cast<WriteQueue*>(req->data);
  uv_stream_t* stream = req->handle;  // req is freed below once drained
  self->writing_ = false;
  self->inflight_.clear();
  if (status != 0) {
    self->discard();
    self->on_drained_(stream, status);
    return;
  }
  if (!self->pending_.empty()) {
    int rc = self->startWrite(stream);
    if (rc != 0) {
      self->discard();
      self->on_drained_(stream, rc);
    }
    return;
  }
  // Drained: an idle connection holds no buffers and no request.
  self->inflight_.release();
  self->pending_.release();
  delete self->req_;
  self->req_ = nullptr;
  self->on_drained_(stream, 0);
}

void WriteQueue::discard() {
  pending_.clear();
  pending_.release();
  if (!writing_) inflight_.release();
}

}  // namespace shardgate::net
