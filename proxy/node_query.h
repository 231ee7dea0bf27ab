// NodeQuery: one blocking exchange with a Redis node -- connect (bounded by a
// deadline), the TLS handshake when the node has tls on (its current client
// context, as a worker's connection would take), AUTH when a password is
// given, the commands pipelined, their replies read whole. It never touches
// an event loop: the server calls it at start, before the workers run (the
// COMMAND fetch of proxy/command_fetch.h), and the cluster monitor from the
// libuv thread pool. Errors say what failed, the caller names the node.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "proxy/shard_map.h"

namespace shardgate::proxy {

// The replies to a query's commands, in order, as the node sent them.
class NodeReplies {
 public:
  size_t size() const { return ends_.size(); }
  std::string_view reply(size_t i) const {
    const size_t start = i == 0 ? 0 : ends_[i - 1];
    return std::string_view(bytes_).substr(start, ends_[i] - start);
  }

 private:
  friend Result<NodeReplies> queryNode(const ShardEndpoint&, const std::optional<std::string>&,
                                       const std::vector<std::vector<std::string>>&, int);
  std::string bytes_;
  std::vector<size_t> ends_;
};

// AUTH's reply is checked and not returned: an AUTH refused is the error,
// its message starting with kAuthRefused.
inline constexpr std::string_view kAuthRefused = "AUTH with shard_password was refused: ";
Result<NodeReplies> queryNode(const ShardEndpoint& node, const std::optional<std::string>& password,
                              const std::vector<std::vector<std::string>>& commands, int timeout_ms);

}  // namespace shardgate::proxy
