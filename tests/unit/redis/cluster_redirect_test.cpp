#include "redis/cluster_redirect.h"

#include <doctest/doctest.h>

#include <string>

#include "tests/unit/redis/allocation_counter.h"
#include "tests/unit/redis/cluster_fixtures.h"

using namespace shardgate;
using redis::classifyReply;
using redis::ClusterRedirect;
using redis::RedirectKind;
using test::clusterFixture;

TEST_CASE("redirects captured from a real cluster") {
  const std::string moved_bytes = clusterFixture("moved.bin");  // the views point into it
  ClusterRedirect moved = classifyReply(moved_bytes);  // -MOVED 10817 127.0.0.1:38851
  CHECK(moved.kind == RedirectKind::kMoved);
  CHECK(moved.slot == 10817);
  CHECK(moved.host == "127.0.0.1");
  CHECK(moved.port == 38851);
  CHECK_FALSE(moved.sameHostAsSender());
  CHECK(moved.isRedirect());

  // cluster-preferred-endpoint-type unknown-endpoint: "-MOVED 10817 :38851".
  const std::string same_bytes = clusterFixture("moved_unknown_endpoint.bin");
  ClusterRedirect same = classifyReply(same_bytes);
  CHECK(same.kind == RedirectKind::kMoved);
  CHECK(same.slot == 10817);
  CHECK(same.host.empty());
  CHECK(same.sameHostAsSender());
  CHECK(same.port == 38851);

  const std::string ask_bytes = clusterFixture("ask.bin");
  ClusterRedirect ask = classifyReply(ask_bytes);  // -ASK 10817 127.0.0.1:50173
  CHECK(ask.kind == RedirectKind::kAsk);
  CHECK(ask.slot == 10817);
  CHECK(ask.host == "127.0.0.1");
  CHECK(ask.port == 50173);

  const std::string again_bytes = clusterFixture("tryagain.bin");
  ClusterRedirect again = classifyReply(again_bytes);
  CHECK(again.kind == RedirectKind::kTryAgain);
  CHECK(again.message == "Multiple keys request during rehashing of slot");
  CHECK_FALSE(again.isRedirect());

  const std::string down_bytes = clusterFixture("clusterdown.bin");
  ClusterRedirect down = classifyReply(down_bytes);
  CHECK(down.kind == RedirectKind::kClusterDown);
  CHECK(down.message == "Hash slot not served");
}

TEST_CASE("anything else is not a redirect") {
  for (std::string reply : {
           "+OK\r\n", ":1\r\n", "$5\r\nMOVED\r\n", "*1\r\n$3\r\nASK\r\n", "", "-", "-E\r\n",
           "-ERR unknown command\r\n", "-WRONGTYPE Operation against a key\r\n",
           "-MOVEDX 1 127.0.0.1:7000\r\n", "-moved 1 127.0.0.1:7000\r\n", "-MOVED\r\n",
           "-MOVED 1\r\n", "-MOVED 16384 127.0.0.1:7000\r\n", "-MOVED -1 127.0.0.1:7000\r\n",
           "-MOVED 01 127.0.0.1:7000\r\n", "-MOVED 1 127.0.0.1\r\n", "-MOVED 1 127.0.0.1:\r\n",
           "-MOVED 1 127.0.0.1:0\r\n", "-MOVED 1 127.0.0.1:65536\r\n", "-MOVED 1 127.0.0.1:70a\r\n",
           "-MOVED 1 127.0.0.1:7000 extra\r\n", "-MOVED  1 127.0.0.1:7000\r\n",
           "-ASK x 127.0.0.1:7000\r\n", "-TRYAGAINX\r\n", "-CLUSTERDOWNX\r\n",
           "-MASTERDOWN Link with MASTER is down\r\n", "-\r\nX", "-\r\n\r\n"}) {
    CAPTURE(reply);
    CHECK(classifyReply(reply).kind == RedirectKind::kNone);
  }
}

TEST_CASE("redirect edge cases: IPv6, unknown hostnames, bare codes, no CRLF") {
  ClusterRedirect v6 = classifyReply("-MOVED 3999 ::1:6381\r\n");
  CHECK(v6.kind == RedirectKind::kMoved);
  CHECK(v6.host == "::1");
  CHECK(v6.port == 6381);
  ClusterRedirect unknown = classifyReply("-ASK 0 ?:6381\r\n");
  CHECK(unknown.kind == RedirectKind::kAsk);
  CHECK(unknown.hostUnknown());
  CHECK(unknown.slot == 0);
  ClusterRedirect name = classifyReply("-MOVED 16383 redis-2.example.com:6379");
  CHECK(name.kind == RedirectKind::kMoved);
  CHECK(name.slot == 16383);
  CHECK(name.host == "redis-2.example.com");
  CHECK(classifyReply("-TRYAGAIN\r\n").kind == RedirectKind::kTryAgain);
  CHECK(classifyReply("-TRYAGAIN\r\n").message.empty());
  CHECK(classifyReply("-CLUSTERDOWN The cluster is down\r\n").message == "The cluster is down");
  CHECK(redis::redirectKindName(RedirectKind::kAsk) == std::string("ask"));
}

TEST_CASE("classifyReply allocates nothing") {
  const std::string moved = clusterFixture("moved.bin");
  const std::string ask = clusterFixture("ask.bin");
  const std::string ok = "+OK\r\n";
  size_t found = 0;
  CHECK(test::allocatedBy([&] {
          for (int i = 0; i < 1000; ++i) {
            found += classifyReply(moved).port != 0;
            found += classifyReply(ask).port != 0;
            found += classifyReply(ok).port != 0;
          }
        }) == 0);
  CHECK(found == 2000);
}
