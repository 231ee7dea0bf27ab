// The multiplexed path's metrics: each command counted once by its kind
// (the command table's flags), its latency observed when its reply is
// handed over, with the batch clock (read once per input batch).
#include <doctest/doctest.h>

#include <string>

#include "proxy/multiplex_session.h"
#include "tests/unit/proxy/fake_links.h"

namespace shardgate::proxy::testing {

namespace {

uint64_t count(const DbStats& d, RequestKind k) { return d.requests[static_cast<size_t>(k)].get(); }

uint64_t observed(const DbStats& d, RequestKind k) {
  uint64_t n = 0;
  for (const auto& b : d.latency[static_cast<size_t>(k)].buckets) n += b.get();
  return n;
}

}  // namespace

TEST_CASE("multiplex session stats: reads, writes and others counted by the command table's flags") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  auto map = db.shard_map->current();
  const std::string k1 = keyOn(*map, 0), k2 = keyOn(*map, 1);

  rig.links.clock_us = 1000;
  rig.send(command({"SET", k1, "v"}) + command({"GET", k2}) + command({"PING"}) + command({"NOSUCHCMD"}));
  const DbStats& d = rig.links.db0();
  CHECK(count(d, RequestKind::kWrite) == 1);
  CHECK(count(d, RequestKind::kRead) == 1);
  CHECK(count(d, RequestKind::kOther) == 2);
  CHECK(observed(d, RequestKind::kWrite) == 0);  // not answered yet

  // Replies arrive 300 us later (the clock a shard read would have set).
  rig.links.clock_us = 1300;
  rig.links.shared(0).reply("+OK\r\n");
  rig.links.shared(1).reply(bulk("v"));
  CHECK(observed(d, RequestKind::kWrite) == 1);
  CHECK(observed(d, RequestKind::kRead) == 1);
  CHECK(observed(d, RequestKind::kOther) == 2);
  // 300 us: the bucket up to 500.
  CHECK(d.latency[static_cast<size_t>(RequestKind::kWrite)].buckets[3].get() == 1);
  CHECK(d.latency[static_cast<size_t>(RequestKind::kWrite)].sum_us.get() == 300);
}

TEST_CASE("multiplex session stats: a command parsed again after a wait is counted once") {
  Database db = testDatabase(1);
  SessionRig rig(db);
  // SUBSCRIBE's confirmation is owed: the PING after it waits (it is parsed
  // again once the confirmation is out) and is not counted yet.
  rig.send(command({"SUBSCRIBE", "ch"}) + command({"PING"}));
  const DbStats& d = rig.links.db0();
  CHECK(count(d, RequestKind::kOther) == 1);
  rig.session.resume();
  CHECK(count(d, RequestKind::kOther) == 1);
}

}  // namespace shardgate::proxy::testing
