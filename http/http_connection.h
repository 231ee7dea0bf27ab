// HttpConnection: one client of an HttpServer, from accept to close. It
// owns its stream and a RequestParser, hands each whole request to the
// server's handler, and writes the answer when the handler calls Respond,
// which may be much later (a password verified off the loop): until then
// reading is off, so a client gets one answer per request, in order.
//
//   reading ─request whole─► handling (not reading) ─respond─► writing
//      ▲                                                         │
//      └──────────── keep-alive: the rest of the input ◄─────────┘
//                    otherwise: close once the answer is written
//
// Lifetime: the stream's close callback frees the connection, and nothing
// else does. A Respond called after that finds its slot empty and drops
// the answer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "http/http_message.h"
#include "http/request_parser.h"
#include "net/stream.h"
#include "net/tls_stream.h"

namespace shardgate::http {

class HttpServer;

class HttpConnection final : private net::StreamOwner {
 public:
  // Takes over stream (not yet reading) and starts reading. tls: the same
  // stream when it is a TLS one (for its client certificate), else null.
  static HttpConnection* start(HttpServer& server, net::Stream* stream, net::TlsStream* tls,
                               uint64_t now_ms);

  // Closes at once (the server stops, or a bound was crossed). Idempotent.
  void close();
  // The server's tick: a request not whole within the timeout gets 408, an
  // idle connection is closed.
  void checkTimeout(uint64_t now_ms, uint64_t timeout_ms);

 private:
  // What a Respond holds: the connection while it lives, and which request
  // the answer is for.
  struct Slot {
    HttpConnection* connection = nullptr;
  };

  HttpConnection(HttpServer& server, net::Stream* stream, net::TlsStream* tls, uint64_t now_ms);
  ~HttpConnection() override;

  void onStreamData(const uint8_t* data, size_t len) override;
  void onStreamEnd(int status) override;
  void onStreamDrained(int status) override;
  void onStreamHandshake() override;
  void onStreamTlsFailed() override;

  // Feeds held and new input to the parser until a request is whole, the
  // input is used up, or the parser failed.
  void parse(const char* data, size_t len);
  // Parses what is held until a request is with the handler or nothing is left.
  void pump();
  void dispatch();
  void answer(Response response, bool keep_alive);
  void finishAfterWrite();

  HttpServer* server_;
  net::Stream* stream_;
  RequestParser parser_;
  std::shared_ptr<Slot> slot_;
  // Input read past the end of a request (pipelining), fed after the answer.
  std::string held_;
  std::string peer_;
  std::string client_cert_subject_;
  uint64_t since_ms_;  // the clock of the timeout: accept, or the last answer
  net::TlsStream* tls_;
  bool handling_ = false;       // a request is with the handler
  bool close_when_written_ = false;
  bool peer_ended_ = false;
  bool pumping_ = false;
  bool closed_ = false;
};

}  // namespace shardgate::http
