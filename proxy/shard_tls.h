// ShardTls: how shardgate speaks TLS to one shard -- the name (or IP
// address) the shard's certificate must carry, and the client contexts to
// connect with. The server builds the first context before any connection
// and publishes a rebuilt one when the shard's CA, certificate or key file
// changes; a connection takes contexts.current() once, when it connects,
// and keeps that context for its life. A shard without TLS has none
// (ShardEndpoint::tls is null).
#pragma once

#include <string>

#include "config/config.h"
#include "tls/tls_context_store.h"

namespace shardgate::proxy {

struct ShardTls {
  // server_name when given (sent as SNI, checked against DNS SANs / CN),
  // else the shard's IP address (checked against IP SANs, no SNI).
  std::string verify_name;
  // The resolved settings: files (and the keys they were given under), policy.
  config::ShardTlsConfig config;
  // Published by the control thread only.
  tls::TlsContextStore contexts;
};

}  // namespace shardgate::proxy
