// RequestParser with byte strings: whole requests, every split of the
// input (one byte at a time), pipelining, and each bound it enforces.
#include <doctest/doctest.h>

#include <string>

#include "http/request_parser.h"

using namespace shardgate::http;

namespace {

// Feeds text in pieces of `step` bytes; returns the bytes consumed.
size_t feedInSteps(RequestParser& p, const std::string& text, size_t step) {
  size_t at = 0;
  while (at < text.size() && p.state() == RequestParser::State::kNeedMore) {
    size_t n = std::min(step, text.size() - at);
    size_t used = p.feed(text.data() + at, n);
    at += used;
    if (used < n) break;
  }
  return at;
}

const std::string kPut =
    "PUT /v1/cluster/update_cert?dry=1 HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "Content-Type:  application/json \r\n"
    "X-Split: a\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "{\"name\": \"x\"}";

}  // namespace

TEST_CASE("RequestParser: a request whole, and the same one byte at a time") {
  for (size_t step : {kPut.size(), size_t{1}, size_t{7}}) {
    CAPTURE(step);
    RequestParser p(ParserLimits{});
    CHECK(feedInSteps(p, kPut, step) == kPut.size());
    REQUIRE(p.state() == RequestParser::State::kComplete);
    CHECK(p.keepAlive());
    Request r = p.takeRequest();
    CHECK(r.method == "PUT");
    CHECK(r.path == "/v1/cluster/update_cert");
    CHECK(r.query == "dry=1");
    CHECK(r.body == "{\"name\": \"x\"}");
    REQUIRE(r.header("content-type") != nullptr);
    CHECK(*r.header("content-type") == "application/json");
    CHECK(*r.header("x-split") == "a");
    CHECK(r.header("missing") == nullptr);
    CHECK(p.state() == RequestParser::State::kNeedMore);
    CHECK_FALSE(p.started());
  }
}

TEST_CASE("RequestParser: pipelined requests stop at the end of each") {
  const std::string two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  RequestParser p(ParserLimits{});
  size_t used = p.feed(two.data(), two.size());
  REQUIRE(p.state() == RequestParser::State::kComplete);
  CHECK(used == two.find("GET /b"));
  CHECK(p.takeRequest().path == "/a");
  size_t rest = p.feed(two.data() + used, two.size() - used);
  CHECK(rest == two.size() - used);
  REQUIRE(p.state() == RequestParser::State::kComplete);
  CHECK_FALSE(p.keepAlive());
  CHECK(p.takeRequest().path == "/b");
}

TEST_CASE("RequestParser: HTTP/1.0 closes unless it asks for keep-alive") {
  RequestParser p(ParserLimits{});
  std::string r10 = "GET / HTTP/1.0\r\n\r\n";
  p.feed(r10.data(), r10.size());
  REQUIRE(p.state() == RequestParser::State::kComplete);
  CHECK_FALSE(p.keepAlive());
  (void)p.takeRequest();
  std::string ka = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  p.feed(ka.data(), ka.size());
  REQUIRE(p.state() == RequestParser::State::kComplete);
  CHECK(p.keepAlive());
}

TEST_CASE("RequestParser: malformed input is a 400") {
  for (std::string bad : {std::string("NOT A REQUEST\r\n\r\n"), std::string("GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
                          std::string("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")}) {
    CAPTURE(bad);
    RequestParser p(ParserLimits{});
    p.feed(bad.data(), bad.size());
    REQUIRE(p.state() == RequestParser::State::kFailed);
    CHECK(p.failureStatus() == 400);
    CHECK(p.failureReason().find("malformed request") == 0);
  }
}

TEST_CASE("RequestParser: headers over the bound are a 431, whole or byte by byte") {
  ParserLimits limits;
  limits.max_header_bytes = 100;
  std::string big = "GET / HTTP/1.1\r\nX-Big: " + std::string(200, 'a') + "\r\n\r\n";
  for (size_t step : {big.size(), size_t{1}}) {
    RequestParser p(limits);
    feedInSteps(p, big, step);
    REQUIRE(p.state() == RequestParser::State::kFailed);
    CHECK(p.failureStatus() == 431);
  }
  std::string long_url = "GET /" + std::string(200, 'u') + " HTTP/1.1\r\n\r\n";
  RequestParser p(limits);
  p.feed(long_url.data(), long_url.size());
  CHECK(p.failureStatus() == 431);
}

TEST_CASE("RequestParser: a body over the bound is a 413, declared or chunked") {
  ParserLimits limits;
  limits.max_body_bytes = 10;
  std::string declared = "PUT / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
  RequestParser p(limits);
  p.feed(declared.data(), declared.size());  // refused before any body byte
  REQUIRE(p.state() == RequestParser::State::kFailed);
  CHECK(p.failureStatus() == 413);

  std::string chunked = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n";
  RequestParser q(limits);
  q.feed(chunked.data(), chunked.size());
  REQUIRE(q.state() == RequestParser::State::kFailed);
  CHECK(q.failureStatus() == 413);

  std::string fits = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n5\r\nfghij\r\n0\r\n\r\n";
  RequestParser r(limits);
  CHECK(feedInSteps(r, fits, 1) == fits.size());
  REQUIRE(r.state() == RequestParser::State::kComplete);
  CHECK(r.takeRequest().body == "abcdefghij");
}

TEST_CASE("RequestParser: Expect: 100-continue is asked once, after the headers") {
  std::string head = "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  RequestParser p(ParserLimits{});
  CHECK_FALSE(p.wantsContinue());
  p.feed(head.data(), head.size());
  CHECK(p.wantsContinue());
  p.continueSent();
  CHECK_FALSE(p.wantsContinue());
  p.feed("abc", 3);
  REQUIRE(p.state() == RequestParser::State::kComplete);
  CHECK(p.takeRequest().body == "abc");
}

TEST_CASE("RequestParser: blank lines before a request are not its start") {
  RequestParser p(ParserLimits{});
  CHECK(p.feed("\r\n", 2) == 2);
  CHECK_FALSE(p.started());
  CHECK(p.feed("G", 1) == 1);
  CHECK(p.started());
}

TEST_CASE("serializeResponse and errorResponse") {
  Response r = errorResponse(403, "unknown_cert", "no certificate \"x\"");
  CHECK(r.body == "{\"error_code\": \"unknown_cert\", \"description\": \"no certificate \\\"x\\\"\"}");
  r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"shardgate\"");
  std::string text = serializeResponse(r, false);
  CHECK(text.rfind("HTTP/1.1 403 Forbidden\r\n", 0) == 0);
  CHECK(text.find("WWW-Authenticate: Basic realm=\"shardgate\"\r\n") != std::string::npos);
  CHECK(text.find("Content-Length: " + std::to_string(r.body.size()) + "\r\n") != std::string::npos);
  CHECK(text.find("Connection: close\r\n\r\n{") != std::string::npos);
  CHECK(jsonQuote(std::string("a\x01")) == "\"a\\u0001\"");
}
