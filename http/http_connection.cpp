#include "http/http_connection.h"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <exception>

#include "common/rate_limited_log.h"
#include "http/http_server.h"

namespace shardgate::http {

HttpConnection* HttpConnection::start(HttpServer& server, net::Stream* stream, net::TlsStream* tls,
                                      uint64_t now_ms) {
  auto* self = new HttpConnection(server, stream, tls, now_ms);
  stream->setOwner(self);
  stream->setReading(true);
  return self;
}

HttpConnection::HttpConnection(HttpServer& server, net::Stream* stream, net::TlsStream* tls,
                               uint64_t now_ms)
    : server_(&server),
      stream_(stream),
      parser_(ParserLimits{server.options_.max_header_bytes, server.options_.max_body_bytes}),
      slot_(std::make_shared<Slot>()),
      peer_(stream->peerName()),
      since_ms_(now_ms),
      tls_(tls) {
  slot_->connection = this;
}

HttpConnection::~HttpConnection() = default;

void HttpConnection::close() {
  if (closed_) return;
  closed_ = true;
  slot_->connection = nullptr;  // a late Respond drops its answer
  if (server_) server_->forget(this);
  server_ = nullptr;
  stream_->close([](void* p) { delete static_cast<HttpConnection*>(p); }, this);
}

void HttpConnection::checkTimeout(uint64_t now_ms, uint64_t timeout_ms) {
  if (closed_ || handling_ || close_when_written_) return;
  if (now_ms - since_ms_ < timeout_ms) return;
  if (!parser_.started()) {
    // Idle between requests (or a TLS handshake that never finished): end quietly.
    close();
    return;
  }
  answer(errorResponse(408, "request_timeout",
                       "the request did not arrive whole within " + std::to_string(timeout_ms) + " ms"),
         false);
}

void HttpConnection::onStreamHandshake() {
  if (tls_) client_cert_subject_ = tls_->session().verifiedPeerSubject();
}

void HttpConnection::onStreamTlsFailed() {
  static thread_local RateLimitedLog failed(spdlog::level::debug, "failed control TLS handshakes");
  if (server_ && tls_) {
    if (auto pass = failed.admit(uv_now(server_->loop_))) {
      spdlog::debug("{}: TLS with {} failed: {}{}", server_->options_.name, peer_,
                    tls_->session().failureReason(), pass);
    }
  }
  close();
}

void HttpConnection::onStreamEnd(int) {
  // The client ended its side. A request being handled still gets its
  // answer (a client may half-close after sending); otherwise we are done.
  if (handling_) {
    peer_ended_ = true;
    return;
  }
  close();
}

void HttpConnection::onStreamDrained(int status) {
  if (status != 0) {
    close();
    return;
  }
  if (close_when_written_ && stream_->writeIdle()) close();
}

void HttpConnection::onStreamData(const uint8_t* data, size_t len) {
  if (closed_ || close_when_written_) return;
  // While a request is handled reading is off; bytes already in flight from
  // the read that turned it off wait in held_, bounded by one read.
  held_.append(reinterpret_cast<const char*>(data), len);
  pump();
}

void HttpConnection::pump() {
  // A loop, not recursion: a handler that answers at once would otherwise
  // nest one call per pipelined request.
  if (pumping_) return;
  pumping_ = true;
  while (!closed_ && !handling_ && !close_when_written_ && !held_.empty()) {
    std::string input;
    input.swap(held_);
    parse(input.data(), input.size());
  }
  pumping_ = false;
}

void HttpConnection::parse(const char* p, size_t len) {
  while (len > 0 && !closed_) {
    size_t used = parser_.feed(p, len);
    p += used;
    len -= used;
    switch (parser_.state()) {
      case RequestParser::State::kNeedMore:
        if (parser_.wantsContinue()) {
          parser_.continueSent();
          static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
          if (stream_->write(reinterpret_cast<const uint8_t*>(kContinue), sizeof kContinue - 1) != 0) {
            close();
            return;
          }
        }
        if (used == 0) return;  // cannot happen with len > 0; never spin
        break;
      case RequestParser::State::kFailed: {
        const int status = parser_.failureStatus();
        const char* code = status == 413 ? "request_too_large"
                           : status == 431 ? "headers_too_large"
                                           : "bad_request";
        answer(errorResponse(status, code, parser_.failureReason()), false);
        return;
      }
      case RequestParser::State::kComplete:
        if (len > 0) held_.assign(p, len);
        dispatch();
        return;
    }
  }
}

void HttpConnection::dispatch() {
  const bool keep_alive = parser_.keepAlive();
  Request request = parser_.takeRequest();
  request.peer = peer_;
  request.client_cert_subject = client_cert_subject_;
  handling_ = true;
  stream_->setReading(false);
  std::shared_ptr<Slot> slot = slot_;
  auto called = std::make_shared<bool>(false);
  Respond respond = [slot, called, keep_alive](Response response) {
    if (*called) return;  // once only
    *called = true;
    if (slot->connection) slot->connection->answer(std::move(response), keep_alive);
  };
  // No exception crosses the loop: a handler that throws answers 500.
  try {
    server_->handler_(request, respond);
  } catch (const std::exception& e) {
    spdlog::error("{}: {} {} from {}: {}", server_->options_.name, request.method, request.path, peer_,
                  e.what());
    respond(errorResponse(500, "internal_error", "the request could not be handled"));
  } catch (...) {
    respond(errorResponse(500, "internal_error", "the request could not be handled"));
  }
}

void HttpConnection::answer(Response response, bool keep_alive) {
  if (closed_) return;
  handling_ = false;
  keep_alive = keep_alive && !peer_ended_;
  if (server_) since_ms_ = uv_now(server_->loop_);
  const std::string bytes = serializeResponse(response, keep_alive);
  if (stream_->write(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()) != 0) {
    close();
    return;
  }
  if (!keep_alive) {
    finishAfterWrite();
    return;
  }
  stream_->setReading(true);
  pump();
}

void HttpConnection::finishAfterWrite() {
  close_when_written_ = true;
  held_.clear();
  stream_->setReading(false);
  stream_->closeNotify();
  if (stream_->writeIdle()) close();
}

}  // namespace shardgate::http
