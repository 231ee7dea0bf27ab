#include "http/request_parser.h"

#include <algorithm>
#include <cctype>

namespace shardgate::http {

namespace {

RequestParser& self(http_parser* p) { return *static_cast<RequestParser*>(p->data); }

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string trim(const std::string& text) {
  size_t b = text.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  size_t e = text.find_last_not_of(" \t");
  return text.substr(b, e - b + 1);
}

}  // namespace

RequestParser::RequestParser(ParserLimits limits) : limits_(limits) {
  http_parser_init(&parser_, HTTP_REQUEST);
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = &RequestParser::onMessageBegin;
  settings_.on_url = &RequestParser::onUrl;
  settings_.on_header_field = &RequestParser::onHeaderField;
  settings_.on_header_value = &RequestParser::onHeaderValue;
  settings_.on_headers_complete = &RequestParser::onHeadersComplete;
  settings_.on_body = &RequestParser::onBody;
  settings_.on_message_complete = &RequestParser::onMessageComplete;
}

size_t RequestParser::feed(const char* data, size_t len) {
  // Zero bytes would tell http_parser the stream ended.
  if (state_ != State::kNeedMore || len == 0) return 0;
  parser_.data = this;
  if (!started_) {
    // Blank lines between requests are allowed (RFC 9112 section 2.2) and
    // are not the start of one.
    size_t skip = 0;
    while (skip < len && (data[skip] == '\r' || data[skip] == '\n')) ++skip;
    if (skip == len) return len;
    started_ = true;
    data += skip;
    len -= skip;
    size_t n = feed(data, len);
    return skip + n;
  }
  size_t n = http_parser_execute(&parser_, &settings_, data, len);
  const http_errno err = HTTP_PARSER_ERRNO(&parser_);
  if (state_ == State::kFailed) return n;  // failed in a callback, status set there
  if (err == HPE_PAUSED) {
    // Paused at the end of a request: the next one starts after takeRequest().
    return n;
  }
  if (err != HPE_OK) {
    if (err == HPE_HEADER_OVERFLOW) {
      fail(431, "the request's headers are too large");
    } else {
      fail(400, std::string("malformed request: ") + http_errno_description(err));
    }
  }
  return n;
}

bool RequestParser::wantsContinue() const {
  return expect_continue_ && headers_done_ && !continue_sent_ && state_ == State::kNeedMore;
}

Request RequestParser::takeRequest() {
  Request out = std::move(request_);
  request_ = Request{};
  url_.clear();
  field_.clear();
  value_.clear();
  in_value_ = false;
  header_bytes_ = 0;
  started_ = false;
  headers_done_ = false;
  expect_continue_ = false;
  continue_sent_ = false;
  state_ = State::kNeedMore;
  http_parser_pause(&parser_, 0);
  return out;
}

int RequestParser::fail(int status, std::string reason) {
  state_ = State::kFailed;
  failure_status_ = status;
  failure_reason_ = std::move(reason);
  return -1;
}

bool RequestParser::countHeaderBytes(size_t len) {
  header_bytes_ += len;
  if (header_bytes_ <= limits_.max_header_bytes) return true;
  fail(431, "the request line and headers are over " + std::to_string(limits_.max_header_bytes) + " bytes");
  return false;
}

void RequestParser::finishHeader() {
  if (!in_value_ && field_.empty()) return;
  request_.headers.emplace_back(lower(std::move(field_)), trim(value_));
  field_.clear();
  value_.clear();
  in_value_ = false;
}

int RequestParser::onMessageBegin(http_parser* p) {
  self(p).started_ = true;
  return 0;
}

int RequestParser::onUrl(http_parser* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  if (!s.countHeaderBytes(len)) return -1;
  s.url_.append(at, len);
  return 0;
}

int RequestParser::onHeaderField(http_parser* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  if (!s.countHeaderBytes(len)) return -1;
  if (s.in_value_) s.finishHeader();
  s.field_.append(at, len);
  return 0;
}

int RequestParser::onHeaderValue(http_parser* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  if (!s.countHeaderBytes(len)) return -1;
  s.in_value_ = true;
  s.value_.append(at, len);
  return 0;
}

int RequestParser::onHeadersComplete(http_parser* p) {
  RequestParser& s = self(p);
  s.finishHeader();
  s.headers_done_ = true;
  s.request_.method = http_method_str(static_cast<http_method>(p->method));
  size_t q = s.url_.find('?');
  s.request_.path = s.url_.substr(0, q);
  s.request_.query = q == std::string::npos ? "" : s.url_.substr(q + 1);
  // A declared body over the bound is refused before any of it is read.
  if ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > s.limits_.max_body_bytes) {
    return s.fail(413, "the request body (" + std::to_string(p->content_length) + " bytes) is over " +
                           std::to_string(s.limits_.max_body_bytes) + " bytes");
  }
  if (const std::string* expect = s.request_.header("expect")) {
    s.expect_continue_ = lower(*expect) == "100-continue";
  }
  return 0;
}

int RequestParser::onBody(http_parser* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  if (s.request_.body.size() + len > s.limits_.max_body_bytes) {
    return s.fail(413, "the request body is over " + std::to_string(s.limits_.max_body_bytes) + " bytes");
  }
  s.request_.body.append(at, len);
  return 0;
}

int RequestParser::onMessageComplete(http_parser* p) {
  RequestParser& s = self(p);
  s.keep_alive_ = http_should_keep_alive(p) != 0;
  s.state_ = State::kComplete;
  http_parser_pause(p, 1);
  return 0;
}

}  // namespace shardgate::http
