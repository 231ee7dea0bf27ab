// planRedirect: what a worker does with a cluster node's error reply,
// decided from the bytes alone.
#include "proxy/cluster_redirects.h"

#include <doctest/doctest.h>

using shardgate::proxy::ClusterRedirects;
using shardgate::proxy::planRedirect;
using shardgate::proxy::RedirectPlan;
using Action = RedirectPlan::Action;

TEST_CASE("planRedirect: MOVED is followed to the node named, with a refresh") {
  RedirectPlan p = planRedirect("-MOVED 3999 127.0.0.1:6381\r\n", "127.0.0.1:7000", 0, 0, 0);
  CHECK(p.action == Action::kMoved);
  CHECK(p.slot == 3999);
  CHECK(p.address == "127.0.0.1:6381");
  CHECK(p.refresh);
}

TEST_CASE("planRedirect: ASK is followed once, the map unchanged, no refresh") {
  RedirectPlan p = planRedirect("-ASK 12182 10.0.0.2:7001\r\n", "10.0.0.1:7000", 2, 0, 0);
  CHECK(p.action == Action::kAsk);
  CHECK(p.slot == 12182);
  CHECK(p.address == "10.0.0.2:7001");
  CHECK_FALSE(p.refresh);
}

TEST_CASE("planRedirect: an empty host is the sender's; IPv6 gets brackets; '?' waits for the topology") {
  CHECK(planRedirect("-MOVED 1 :6390\r\n", "10.1.2.3:7000", 0, 0, 0).address == "10.1.2.3:6390");
  CHECK(planRedirect("-MOVED 1 :6390\r\n", "[::1]:7000", 0, 0, 0).address == "[::1]:6390");
  CHECK(planRedirect("-MOVED 1 ::1:6390\r\n", "127.0.0.1:7000", 0, 0, 0).address == "[::1]:6390");
  RedirectPlan unknown = planRedirect("-MOVED 1 ?:6390\r\n", "127.0.0.1:7000", 0, 0, 0);
  // No address: ClusterRedirects has no link for it and waits for the
  // refresh (only the topology can say where it is).
  CHECK(unknown.action == Action::kMoved);
  CHECK(unknown.address.empty());
  CHECK(unknown.refresh);
}

TEST_CASE("planRedirect: redirects are bounded per part, then an error naming the slot") {
  CHECK(planRedirect("-MOVED 7 127.0.0.1:1\r\n", "127.0.0.1:2", 4, 0, 0).action == Action::kMoved);
  RedirectPlan p = planRedirect("-MOVED 7 127.0.0.1:1\r\n", "127.0.0.1:2", ClusterRedirects::kMaxRedirects, 0, 0);
  CHECK(p.action == Action::kTooMany);
  CHECK(p.error == "-ERR shardgate: slot 7 was redirected 5 times (last: MOVED to 127.0.0.1:1); the cluster is "
                   "changing, try again\r\n");
  // A command split in 3 parts may take 5 redirects for each.
  CHECK(planRedirect("-ASK 7 127.0.0.1:1\r\n", "127.0.0.1:2", 14, 0, 3).action == Action::kAsk);
  CHECK(planRedirect("-ASK 7 127.0.0.1:1\r\n", "127.0.0.1:2", 15, 0, 3).action == Action::kTooMany);
}

TEST_CASE("planRedirect: TRYAGAIN and CLUSTERDOWN are retried with back-off for about 2 s, then passed on") {
  uint64_t total = 0;
  for (uint8_t attempt = 0; attempt < ClusterRedirects::kMaxRetries; ++attempt) {
    RedirectPlan p = planRedirect("-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "127.0.0.1:1", 0,
                                  attempt, 0);
    REQUIRE(p.action == Action::kRetry);
    CHECK_FALSE(p.refresh);
    total += p.delay_ms;
  }
  CHECK(total >= 2000);
  CHECK(total <= 2500);
  CHECK(planRedirect("-TRYAGAIN x\r\n", "127.0.0.1:1", 0, ClusterRedirects::kMaxRetries, 0).action ==
        Action::kPass);
  RedirectPlan down = planRedirect("-CLUSTERDOWN The cluster is down\r\n", "127.0.0.1:1", 0, 0, 0);
  CHECK(down.action == Action::kRetry);
  CHECK(down.delay_ms == 25);
  CHECK(down.refresh);
}

TEST_CASE("planRedirect: other errors and malformed redirects reach the client as they are") {
  for (const char* reply : {"-ERR wrong number of arguments\r\n", "-WRONGTYPE Operation against a key\r\n",
                            "-MOVED 99999 127.0.0.1:1\r\n", "-MOVED 1 127.0.0.1\r\n", "-MOVEDX 1 a:1\r\n",
                            "+OK\r\n"}) {
    CAPTURE(reply);
    RedirectPlan p = planRedirect(reply, "127.0.0.1:1", 0, 0, 0);
    CHECK(p.action == Action::kPass);
    CHECK_FALSE(p.refresh);
  }
}

// planStatefulRedirect: a command on a client's own connection that the node
// did not run (a blocking command it unblocked, a transaction's command).

using shardgate::proxy::planStatefulRedirect;

TEST_CASE("planStatefulRedirect: MOVED and ASK are followed as on a shared link") {
  auto moved = planStatefulRedirect("-MOVED 3999 127.0.0.1:6381\r\n", "127.0.0.1:7000", 3999, 0, 0);
  CHECK(moved.plan.action == Action::kMoved);
  CHECK(moved.plan.address == "127.0.0.1:6381");
  CHECK_FALSE(moved.reroute);
  auto ask = planStatefulRedirect("-ASK 3999 127.0.0.1:6381\r\n", "127.0.0.1:7000", 3999, 0, 0);
  CHECK(ask.plan.action == Action::kAsk);
}

TEST_CASE("planStatefulRedirect: UNBLOCKED after a failover is resent to the slot's owner, the link given up") {
  auto p = planStatefulRedirect(
      "-UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)\r\n",
      "127.0.0.1:7000", 12, 0, 0);
  CHECK(p.plan.action == Action::kRetry);
  CHECK(p.reroute);
  CHECK(p.link_lost);
  CHECK(p.plan.refresh);
  CHECK(p.plan.delay_ms == 25);
  auto stream = planStatefulRedirect("-UNBLOCKED the stream key no longer exists\r\n", "127.0.0.1:7000", 12, 0, 0);
  CHECK(stream.plan.action == Action::kRetry);
  CHECK_FALSE(stream.link_lost);
}

TEST_CASE("planStatefulRedirect: TRYAGAIN and CLUSTERDOWN wait for a failover, then an error naming the slot") {
  auto p = planStatefulRedirect("-CLUSTERDOWN The cluster is down\r\n", "127.0.0.1:7000", 77, 0, 3);
  CHECK(p.plan.action == Action::kRetry);
  CHECK(p.reroute);
  CHECK(p.plan.delay_ms == 200);
  auto last = planStatefulRedirect("-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "127.0.0.1:7000",
                                   77, 0, ClusterRedirects::kMaxStatefulRetries);
  CHECK(last.plan.action == Action::kTooMany);
  CHECK(last.plan.error.find("slot 77") != std::string::npos);
  CHECK(last.plan.error.rfind("-ERR shardgate:", 0) == 0);
}

TEST_CASE("planStatefulRedirect: a MOVED to an unknown host waits for the refresh; other errors pass") {
  auto unknown = planStatefulRedirect("-MOVED 5 ?:6390\r\n", "127.0.0.1:7000", 5, 0, 0);
  CHECK(unknown.plan.action == Action::kRetry);
  CHECK(unknown.reroute);
  CHECK(planStatefulRedirect("-WRONGTYPE Operation against a key\r\n", "127.0.0.1:7000", 5, 0, 0).plan.action ==
        Action::kPass);
  auto many = planStatefulRedirect("-MOVED 5 127.0.0.1:1\r\n", "127.0.0.1:2", 5, ClusterRedirects::kMaxRedirects, 0);
  CHECK(many.plan.action == Action::kTooMany);
}

TEST_CASE("planStatefulRedirect: a split command's parts may each be redirected as often as one command") {
  const uint16_t max = ClusterRedirects::kMaxRedirects;
  auto three = planStatefulRedirect("-ASK 5 127.0.0.1:1\r\n", "127.0.0.1:2", 5, max, 0, 3);
  CHECK(three.plan.action == Action::kAsk);
  auto spent = planStatefulRedirect("-ASK 5 127.0.0.1:1\r\n", "127.0.0.1:2", 5, 3 * max, 0, 3);
  CHECK(spent.plan.action == Action::kTooMany);
  CHECK(spent.plan.error.find("slot 5") != std::string::npos);
}
