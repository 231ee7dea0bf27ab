// Request and Response: one HTTP/1.1 exchange as the handlers of an
// HttpServer see it. A Request is whole (headers and body) before a handler
// is called; a Response is whole before it is written. Nothing here touches
// a socket, so handlers are tested with plain values.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shardgate::http {

struct Request {
  std::string method;  // "GET", "PUT", ...
  std::string path;    // "/v1/cluster" (the target before '?', not decoded)
  std::string query;   // after '?', empty when none
  // In arrival order; names lower-case, values with surrounding blanks trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string peer;  // "127.0.0.1:54321"
  // TLS only: the subject of a client certificate that chained to the
  // listener's trusted CAs ("CN=ops,O=example"); empty when none did.
  std::string client_cert_subject;

  // The first header of that name (lower-case), or nullptr.
  const std::string* header(std::string_view lower_name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra headers ("WWW-Authenticate", ...). Content-Length, Content-Type
  // and Connection are the server's.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Answers a request; call it once, on the server's loop, now or later. It is
// safe to call after the connection closed (the answer is dropped).
using Respond = std::function<void(Response)>;
using Handler = std::function<void(const Request&, Respond)>;

// "Not Found" for 404, and so on; "Unknown" for a code it does not know.
const char* reasonPhrase(int status);

// The status line, headers and body as written to the peer.
// keep_alive false adds "Connection: close".
std::string serializeResponse(const Response& response, bool keep_alive);

// A response in the error shape every shardgate endpoint uses:
// {"error_code": code, "description": description} (both JSON-escaped).
Response errorResponse(int status, std::string_view code, std::string_view description);

// text as a JSON string literal, quotes included.
std::string jsonQuote(std::string_view text);

}  // namespace shardgate::http
