// ShardTls: how shardgate speaks TLS to one shard -- the name (or IP
// address) the shard's certificate must carry, and the client contexts to
// connect with. The server builds the first context before any connection
// and publishes a rebuilt one when the shard's CA, certificate or key file
// changes; a connection takes contexts.current() once, when it connects,
// and keeps that context for its life. A shard without TLS has none
// (ShardEndpoint::tls is null).
//
// A Redis Cluster's nodes are not named in the config: the database's
// shard_tls holds the contexts (built from its files) and each node's
// ShardTls points at it (base), with the node's own verify_name, so
// resumption stays per node while the files are read once.
#pragma once

#include <memory>
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
  // A cluster node's: the database's ShardTls whose contexts it uses.
  std::shared_ptr<const ShardTls> base;

  tls::TlsContextPtr currentContext() const { return base ? base->contexts.current() : contexts.current(); }
};

// A cluster node's TLS from the database's (null when db_tls is).
inline std::shared_ptr<ShardTls> nodeTls(const std::shared_ptr<ShardTls>& db_tls, const std::string& host) {
  if (!db_tls) return nullptr;
  auto out = std::make_shared<ShardTls>();
  out->verify_name = db_tls->config.server_name.empty() ? host : db_tls->config.server_name;
  out->config = db_tls->config;
  out->base = db_tls;
  return out;
}

}  // namespace shardgate::proxy
