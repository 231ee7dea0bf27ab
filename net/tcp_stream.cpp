#include "net/tcp_stream.h"

#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <memory>

#include "common/uv_handle.h"
#include "net/uv_io_driver.h"

namespace shardgate::net {

TcpStream::TcpStream(UvIoDriver& driver, StreamOwner* owner)
    : driver_(driver), owner_(owner), queue_(&TcpStream::onDrained) {
  uv_tcp_init(driver.loop(), &tcp_);
  tcp_.data = this;
}

// ---- the driver's half: opening and connecting --------------------------------

int UvIoDriver::adopt(int fd, StreamOwner* owner, Stream** out) {
  auto* s = new TcpStream(*this, owner);
  // TCP_NODELAY came with the socket from the listening one (Listener::start).
  if (int rc = uv_tcp_open(&s->tcp_, fd); rc != 0) {
    ::close(fd);
    s->close();
    return rc;
  }
  *out = s;
  return 0;
}

int UvIoDriver::connect(const sockaddr& addr, StreamOwner* owner, const ConnectOptions& options,
                        Stream** out) {
  auto* s = new TcpStream(*this, owner);
  s->keepalive_s_ = options.keepalive_s;
  // Requests are allocated for their one use rather than kept in every
  // stream: an idle connection's memory is what the proxy scales by.
  auto* req = new uv_connect_t;
  req->data = s;
  int rc = uv_tcp_connect(req, &s->tcp_, &addr, [](uv_connect_t* r, int status) {
    std::unique_ptr<uv_connect_t> done(r);
    static_cast<TcpStream*>(r->data)->onConnect(status);
  });
  if (rc != 0) {
    delete req;
    s->close();
    return rc;
  }
  s->connecting_ = true;
  *out = s;
  return 0;
}

void TcpStream::onConnect(int status) {
  if (closing_) return;  // ECANCELED from close(): nobody to tell
  connecting_ = false;
  if (status != 0) {
    if (owner_) owner_->onStreamConnected(status);
    return;
  }
  uv_tcp_nodelay(&tcp_, 1);
  if (keepalive_s_ != 0) uv_tcp_keepalive(&tcp_, 1, keepalive_s_);
  // What was written while connecting goes out now, ahead of anything the
  // owner writes when told.
  int rc = queue_.flush(stream());
  applyReading();
  if (owner_) owner_->onStreamConnected(0);
  if (rc != 0 && !closing_ && owner_) owner_->onStreamDrained(rc);
}

// ---- reading ----------------------------------------------------------------

void TcpStream::onAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  *buf = static_cast<TcpStream*>(handle->data)->driver_.readBuffer();
}

void TcpStream::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<TcpStream*>(s->data);
  if (self->closing_ || nread == 0 || !self->owner_) return;
  if (nread < 0) {
    self->owner_->onStreamEnd(static_cast<int>(nread));
    return;
  }
  if (self->bytes_in_) self->bytes_in_->add(static_cast<uint64_t>(nread));
  self->owner_->onStreamData(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
}

void TcpStream::setReading(bool on) {
  want_reading_ = on;
  applyReading();  // while connecting: applied once connected
}

void TcpStream::applyReading() {
  if (closing_ || connecting_ || want_reading_ == reading_) return;
  if (want_reading_) {
    uv_read_start(stream(), &TcpStream::onAlloc, &TcpStream::onRead);
  } else {
    uv_read_stop(stream());
  }
  reading_ = want_reading_;
}

// ---- writing ----------------------------------------------------------------

int TcpStream::write(const uint8_t* data, size_t len) {
  if (closing_) return UV_ECANCELED;
  if (connecting_) {
    queue_.hold(data, len);
    return 0;
  }
  return queue_.send(stream(), data, len);
}

void TcpStream::onDrained(uv_stream_t* stream, int status) {
  auto* self = static_cast<TcpStream*>(stream->data);
  if (self->closing_ || !self->owner_) return;
  self->owner_->onStreamDrained(status);
}

int TcpStream::shutdownWrite() {
  if (closing_) return UV_ECANCELED;
  auto* req = new uv_shutdown_t;
  req->data = this;
  // The callback runs with ECANCELED if the stream closes first; the
  // stream is still allocated then (freed in the close callback, later).
  int rc = uv_shutdown(req, stream(), [](uv_shutdown_t* r, int status) {
    std::unique_ptr<uv_shutdown_t> done(r);
    auto* self = static_cast<TcpStream*>(r->data);
    if (!self->closing_ && self->owner_) self->owner_->onStreamShutdown(status);
  });
  if (rc != 0) delete req;
  return rc;
}

// ---- closing ----------------------------------------------------------------

void TcpStream::close(ClosedFn closed, void* arg) {
  if (closing_) return;
  closing_ = true;
  owner_ = nullptr;
  closed_ = closed;
  closed_arg_ = arg;
  uv_close(asHandle(&tcp_), [](uv_handle_t* h) {
    auto* self = static_cast<TcpStream*>(h->data);
    ClosedFn fn = self->closed_;
    void* fn_arg = self->closed_arg_;
    delete self;
    if (fn) fn(fn_arg);
  });
}

// ---- about the socket ---------------------------------------------------------

std::string TcpStream::peerName() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
  return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
}

size_t TcpStream::bytesWaiting() const {
  uv_os_fd_t fd;
  if (closing_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return 0;
  int bytes = 0;
  return ioctl(fd, FIONREAD, &bytes) == 0 && bytes > 0 ? static_cast<size_t>(bytes) : 0;
}

}  // namespace shardgate::net
