// readClusterTopology against stand-in nodes: a loopback socket per node that
// answers CLUSTER SHARDS / SLOTS with bytes captured from a real cluster
// (tests/unit/redis/cluster_fixtures/), or with the error an older or a
// non-cluster Redis gives. No event loop.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include <atomic>
#include <chrono>
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/socket_address.h"
#include "proxy/database.h"
#include "server/cluster_monitor.h"
#include "tests/unit/redis/cluster_fixtures.h"

namespace shardgate::server {

namespace {

using Replies = std::map<std::string, std::string>;

// One node: answers each command it reads ("SHARDS" or "SLOTS") from
// `replies`, and records what it was asked. Serves until destroyed.
class FakeNode {
 public:
  explicit FakeNode(std::map<std::string, std::string> replies) : replies_(std::move(replies)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    REQUIRE(::listen(fd_, 8) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeNode() {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  proxy::ShardEndpoint endpoint() const { return endpointOf(port_); }
  std::vector<std::string> asked() {
    std::lock_guard<std::mutex> lock(mu_);
    return asked_;
  }
  // When each command arrived (steady clock, ms).
  std::vector<int64_t> askedAt() {
    std::lock_guard<std::mutex> lock(mu_);
    return asked_at_;
  }
  void setReply(const std::string& sub, std::string bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    replies_[sub] = std::move(bytes);
  }
  uint16_t port() const { return port_; }

  static proxy::ShardEndpoint endpointOf(uint16_t port) {
    const std::string address = "127.0.0.1:" + std::to_string(port);
    auto parsed = net::parseSocketAddress(address);
    REQUIRE(parsed.ok());
    auto addr = net::toSockaddr(*parsed);
    REQUIRE(addr.ok());
    return proxy::ShardEndpoint{address, *addr};
  }

 private:
  void serve() {
    while (!stopping_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string in;
      char buf[4096];
      // One command per connection is all readClusterTopology sends.
      while (true) {
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        const char* sub = in.find("SHARDS\r\n") != std::string::npos  ? "SHARDS"
                          : in.find("SLOTS\r\n") != std::string::npos ? "SLOTS"
                                                                      : nullptr;
        if (sub == nullptr) continue;
        std::string reply;
        {
          std::lock_guard<std::mutex> lock(mu_);
          asked_.push_back(sub);
          asked_at_.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now().time_since_epoch())
                                  .count());
          reply = replies_[sub];
        }
        (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        break;
      }
      ::close(c);
    }
  }

  std::map<std::string, std::string> replies_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> asked_;
  std::vector<int64_t> asked_at_;
};

// A loopback port nothing listens on (bound, never listening: refused).
struct RefusedPort {
  RefusedPort() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ~RefusedPort() { ::close(fd); }
  int fd = -1;
  uint16_t port = 0;
};

}  // namespace

TEST_CASE("cluster discovery: CLUSTER SHARDS from the first node that answers") {
  RefusedPort down;
  FakeNode node(Replies{{"SHARDS", test::clusterFixture("shards_resp2.bin")}});
  auto reading = readClusterTopology({FakeNode::endpointOf(down.port), node.endpoint()}, std::nullopt, 2000);
  REQUIRE_MESSAGE(reading.ok(), (reading.ok() ? "" : reading.message()));
  CHECK(reading->node == node.endpoint().address);
  CHECK(reading->command == "CLUSTER SHARDS");
  CHECK(reading->topology.describe() == "3 masters, 3 replicas, 16384 slots covered");
  CHECK(node.asked() == std::vector<std::string>{"SHARDS"});
}

TEST_CASE("cluster discovery: a Redis without CLUSTER SHARDS is asked CLUSTER SLOTS") {
  FakeNode old_redis(Replies{{"SHARDS", "-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n"},
                      {"SLOTS", test::clusterFixture("slots_resp2.bin")}});
  auto reading = readClusterTopology({old_redis.endpoint()}, std::nullopt, 2000);
  REQUIRE_MESSAGE(reading.ok(), (reading.ok() ? "" : reading.message()));
  CHECK(reading->command == "CLUSTER SLOTS");
  CHECK(reading->topology.coveredSlots() == 16384);
  CHECK(old_redis.asked() == std::vector<std::string>{"SHARDS", "SLOTS"});
}

TEST_CASE("cluster discovery: no node answering is one error naming each node and why") {
  RefusedPort down;
  FakeNode plain(Replies{{"SHARDS", "-ERR This instance has cluster support disabled\r\n"}});
  FakeNode empty(Replies{{"SHARDS", "*0\r\n"}});
  auto reading = readClusterTopology(
      {FakeNode::endpointOf(down.port), plain.endpoint(), empty.endpoint()}, std::nullopt, 2000);
  REQUIRE_FALSE(reading.ok());
  const std::string& why = reading.message();
  CHECK_MESSAGE(why.find(FakeNode::endpointOf(down.port).address + ": connect: Connection refused") != std::string::npos, why);
  CHECK_MESSAGE(why.find(plain.endpoint().address + ": ") != std::string::npos, why);
  CHECK_MESSAGE(why.find("cluster support disabled") != std::string::npos, why);
  CHECK_MESSAGE(why.find(empty.endpoint().address + ": ") != std::string::npos, why);
  // A plain Redis is not asked CLUSTER SLOTS: its error is its answer.
  CHECK(plain.asked() == std::vector<std::string>{"SHARDS"});
}

namespace {

// The fixtures' six nodes, each played by a FakeNode: the captured replies
// with every node's port changed to its stand-in's, so a refresh that asks
// "the nodes it knows" reaches only these.
constexpr uint16_t kFixturePorts[] = {50173, 38969, 38851, 34835, 53943, 57959};

struct FakeCluster {
  FakeCluster() {
    for (size_t i = 0; i < 6; ++i) nodes.push_back(std::make_unique<FakeNode>(Replies{}));
    serve("shards_resp2.bin");
  }
  // Every node answers CLUSTER SHARDS with this fixture from now on.
  void serve(const char* fixture) {
    std::string bytes = test::clusterFixture(fixture);
    for (size_t i = 0; i < 6; ++i) {
      const std::string from = ":" + std::to_string(kFixturePorts[i]) + "\r\n";
      const size_t at = bytes.find(from);
      REQUIRE(at != std::string::npos);
      bytes.replace(at, from.size(), ":" + std::to_string(nodes[i]->port()) + "\r\n");
    }
    for (auto& n : nodes) n->setReply("SHARDS", bytes);
  }
  std::vector<int64_t> askedAt() {
    std::vector<int64_t> all;
    for (auto& n : nodes) {
      auto at = n->askedAt();
      all.insert(all.end(), at.begin(), at.end());
    }
    std::sort(all.begin(), all.end());
    return all;
  }
  std::vector<std::unique_ptr<FakeNode>> nodes;
};

// Runs the loop for `ms`, then returns (the monitor's handles stay open).
void runFor(uv_loop_t* loop, uint64_t ms) {
  uv_timer_t stop;
  uv_timer_init(loop, &stop);
  uv_timer_start(&stop, [](uv_timer_t* t) { uv_stop(t->loop); }, ms, 0);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close(reinterpret_cast<uv_handle_t*>(&stop), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
}

proxy::Database clusterDatabase(const proxy::ShardEndpoint& seed) {
  proxy::Database db;
  db.name = "big";
  db.cluster = true;
  db.cluster_seeds = {seed};
  db.cluster_refresh_ms = 3600 * 1000;  // only requested refreshes in these tests
  return db;
}

}  // namespace

TEST_CASE("cluster monitor: discovery publishes the first map; a refresh publishes only a change") {
  FakeCluster cluster;
  proxy::Database db = clusterDatabase(cluster.nodes[2]->endpoint());
  auto monitor = ClusterMonitor::create(db);
  REQUIRE_MESSAGE(monitor.ok(), (monitor.ok() ? "" : monitor.message()));
  REQUIRE(db.shard_map);
  const auto first = db.shard_map->current();
  CHECK(first->shardCount() == 3);
  const uint64_t generation = db.shard_map->generation();

  uv_loop_t loop;
  uv_loop_init(&loop);
  (*monitor)->start(&loop);
  // The same topology again: nothing published.
  (*monitor)->requestRefresh();
  runFor(&loop, 300);
  CHECK(cluster.askedAt().size() == 2);
  CHECK(db.shard_map->generation() == generation);

  // 100 slots moved (38851 -> 50173): one new map, same masters, same order.
  cluster.serve("shards_resharded_resp2.bin");
  (*monitor)->requestRefresh();
  runFor(&loop, 300);
  CHECK(db.shard_map->generation() == generation + 1);
  const auto moved = db.shard_map->current();
  REQUIRE(moved->shardCount() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(moved->shard(i).address == first->shard(i).address);
  size_t changed = 0;
  for (uint16_t s = 0; s < 16384; ++s) changed += moved->shardOfSlot(s) != first->shardOfSlot(s);
  CHECK(changed == 100);

  (*monitor)->stop();
  uv_run(&loop, UV_RUN_DEFAULT);  // the closed handles' callbacks, and any refresh in flight
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("cluster monitor: node states follow the last read, a failed master down") {
  FakeCluster cluster;
  proxy::Database db = clusterDatabase(cluster.nodes[0]->endpoint());
  auto monitor = ClusterMonitor::create(db);
  REQUIRE(monitor.ok());
  auto count = [&](bool master, bool up) {
    size_t n = 0;
    for (const auto& s : (*monitor)->nodeStates()) n += s.master == master && s.up == up;
    return n;
  };
  CHECK((*monitor)->nodeStates().size() == 6);
  CHECK(count(true, true) == 3);
  CHECK(count(false, true) == 3);

  uv_loop_t loop;
  uv_loop_init(&loop);
  (*monitor)->start(&loop);
  cluster.serve("shards_failed_resp2.bin");
  (*monitor)->requestRefresh();
  runFor(&loop, 300);
  // The dead master is listed, down; its replica is a master now.
  const auto states = (*monitor)->nodeStates();
  CHECK(states.size() == 6);
  CHECK(count(true, true) == 3);
  CHECK(count(false, true) == 2);
  CHECK(std::count_if(states.begin(), states.end(), [](const auto& s) { return !s.up; }) == 1);
  // The one down is no shard of the map any more (its replica took its slots).
  const auto down = std::find_if(states.begin(), states.end(), [](const auto& s) { return !s.up; });
  REQUIRE(down != states.end());
  CHECK(down->master);
  const auto map = db.shard_map->current();
  for (size_t i = 0; i < map->shardCount(); ++i) CHECK(map->shard(i).address != down->address);
  (*monitor)->stop();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("cluster monitor: a change is logged at once, the next ones summed up 5 s later; node changes once") {
  FakeCluster cluster;
  proxy::Database db = clusterDatabase(cluster.nodes[0]->endpoint());
  auto monitor = ClusterMonitor::create(db);
  REQUIRE(monitor.ok());
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  auto before = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("monitor", sink));
  auto count = [&](std::string_view what) {
    size_t n = 0;
    for (const auto& line : sink->last_formatted()) n += line.find(what) != std::string::npos;
    return n;
  };
  uv_loop_t loop;
  uv_loop_init(&loop);
  (*monitor)->start(&loop);
  auto refresh = [&](const char* fixture) {
    cluster.serve(fixture);
    (*monitor)->requestRefresh();
    runFor(&loop, 200);
  };
  refresh("shards_resharded_resp2.bin");
  CHECK(count("cluster topology changed") == 1);
  refresh("shards_failed_resp2.bin");  // a failover: logged with the next summary
  refresh("shards_failed_resp2.bin");  // nothing new
  CHECK(count("cluster topology changed") == 1);
  CHECK(count("cluster nodes changed") == 1);
  CHECK(count(" failed") == 1);
  runFor(&loop, ClusterMonitor::kChangeLogGapMs);
  CHECK(count("cluster topology changed") == 2);
  CHECK(count("1 failed node") == 1);
  refresh("shards_failed_resp2.bin");
  CHECK(count("cluster topology changed") == 2);
  // Two more changes (the dead master back with its slots, then the
  // reshard undone): held back, then written by stop() rather than lost.
  refresh("shards_resharded_resp2.bin");
  refresh("shards_resp2.bin");
  CHECK(count("cluster topology changed") == 2);
  CHECK(count("is back as master") == 1);
  (*monitor)->stop();
  CHECK(count("cluster topology changed") == 3);
  CHECK(count("2 changes since the last line") == 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  spdlog::set_default_logger(before);
}

TEST_CASE("cluster monitor: refresh requests from many threads are coalesced, 100 ms apart") {
  FakeCluster cluster;
  proxy::Database db = clusterDatabase(cluster.nodes[0]->endpoint());
  auto monitor = ClusterMonitor::create(db);
  REQUIRE(monitor.ok());
  uv_loop_t loop;
  uv_loop_init(&loop);
  (*monitor)->start(&loop);
  std::vector<std::thread> askers;
  for (int t = 0; t < 4; ++t) {
    askers.emplace_back([&] {
      for (int i = 0; i < 200; ++i) (*monitor)->requestRefresh();
    });
  }
  for (auto& t : askers) t.join();
  runFor(&loop, 350);
  const auto at = cluster.askedAt();
  // Discovery, then one refresh for the whole burst (two if the burst
  // straddled the first one's start), not 800.
  CHECK(at.size() >= 2);
  CHECK(at.size() <= 3);
  for (size_t i = 2; i < at.size(); ++i) CHECK(at[i] - at[i - 1] >= 90);
  (*monitor)->stop();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace shardgate::server
