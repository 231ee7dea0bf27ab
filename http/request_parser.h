// RequestParser: HTTP/1.1 requests from bytes, one at a time, with bounded
// memory. The parsing is the http_parser library's (the parser Node.js was
// built on); this class adds the bounds and collects one Request. It is
// resumable: feed any split of the input and get the same requests.
//
//   feed(bytes) ─► kNeedMore ... ─► kComplete: takeRequest(), then feed the rest
//                              └──► kFailed: failureStatus() (400, 413, 431), close
//
// It stops at the end of each request (pipelined bytes after it are not
// consumed), so a connection answers one request before it reads the next.
// No I/O: tested with byte strings.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <string>

#include "http/http_message.h"

namespace shardgate::http {

struct ParserLimits {
  // Request line and headers together, counted as they arrive.
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 1024 * 1024;
};

class RequestParser {
 public:
  enum class State { kNeedMore, kComplete, kFailed };

  explicit RequestParser(ParserLimits limits);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Consumes bytes up to the end of the current request and returns how
  // many it took; the caller feeds the rest after takeRequest(). Feeding in
  // kComplete or kFailed consumes nothing.
  size_t feed(const char* data, size_t len);

  State state() const { return state_; }
  // Some byte of the current request has arrived (a timeout then is a 408,
  // not an idle keep-alive connection ending).
  bool started() const { return started_; }
  // The headers asked for "100 Continue" before the body, and the body has
  // not arrived yet: the connection answers 100 once (see continueSent()).
  bool wantsContinue() const;
  void continueSent() { continue_sent_ = true; }
  // kComplete: whether the connection stays open after the answer
  // (HTTP/1.1 without "Connection: close", or HTTP/1.0 with keep-alive).
  bool keepAlive() const { return keep_alive_; }
  // kFailed: 400 (malformed), 413 (body over the bound), 431 (headers over it).
  int failureStatus() const { return failure_status_; }
  const std::string& failureReason() const { return failure_reason_; }

  // kComplete: hands over the request and gets ready for the next one.
  Request takeRequest();

 private:
  static int onMessageBegin(http_parser* p);
  static int onUrl(http_parser* p, const char* at, size_t len);
  static int onHeaderField(http_parser* p, const char* at, size_t len);
  static int onHeaderValue(http_parser* p, const char* at, size_t len);
  static int onHeadersComplete(http_parser* p);
  static int onBody(http_parser* p, const char* at, size_t len);
  static int onMessageComplete(http_parser* p);

  bool countHeaderBytes(size_t len);
  int fail(int status, std::string reason);
  void finishHeader();

  ParserLimits limits_;
  http_parser parser_{};
  http_parser_settings settings_{};
  Request request_;
  std::string url_;
  std::string field_;
  std::string value_;
  bool in_value_ = false;
  size_t header_bytes_ = 0;
  State state_ = State::kNeedMore;
  bool started_ = false;
  bool headers_done_ = false;
  bool expect_continue_ = false;
  bool continue_sent_ = false;
  bool keep_alive_ = true;
  int failure_status_ = 0;
  std::string failure_reason_;
};

}  // namespace shardgate::http
