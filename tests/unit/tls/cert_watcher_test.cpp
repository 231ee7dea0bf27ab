#include "tests/unit/temp_dir.h"
#include "tls/cert_watcher.h"

#include <doctest/doctest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

using namespace shardgate;
using namespace shardgate::tls;

using shardgate::testing::TempDir;

namespace {

constexpr uint32_t kSettleMs = 100;


void writeFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE(out);
  out << content;
}

std::string readFile(const std::string& path) {
  std::string content;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[256];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) content.append(buf, n);
    std::fclose(f);
  }
  return content;
}

// A private uv loop. Every run is bounded by a timer, so no test can hang.
class Loop {
 public:
  Loop() { REQUIRE(uv_loop_init(&loop_) == 0); }
  ~Loop() {
    // Whatever the test left open is closed here, so the loop can close.
    uv_walk(&loop_, [](uv_handle_t* h, void*) {
      if (!uv_is_closing(h)) uv_close(h, nullptr);
    }, nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop_) == 0);
  }
  uv_loop_t* get() { return &loop_; }
  uint64_t now() {
    uv_update_time(&loop_);
    return uv_now(&loop_);
  }

  // Runs until done() holds or timeout_ms passed; returns done().
  bool runUntil(const std::function<bool()>& done, uint64_t timeout_ms) {
    struct Check {
      const std::function<bool()>* done;
      uint64_t deadline;
    } check{&done, now() + timeout_ms};
    uv_timer_t timer;
    uv_timer_init(&loop_, &timer);
    timer.data = &check;
    uv_timer_start(&timer, [](uv_timer_t* t) {
      auto* c = static_cast<Check*>(t->data);
      if ((*c->done)() || uv_now(t->loop) >= c->deadline) uv_stop(t->loop);
    }, 2, 2);
    if (!done()) uv_run(&loop_, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);  // runs the close callback
    return done();
  }
  void runFor(uint64_t ms) { runUntil([] { return false; }, ms); }

 private:
  uv_loop_t loop_;
};

// A watcher plus what its callback saw.
struct Watched {
  Loop& loop;
  std::unique_ptr<CertWatcher> watcher;
  int calls = 0;
  std::vector<uint64_t> call_times;
  std::function<void()> also;  // runs inside the callback

  Watched(Loop& l, const std::string& dir, std::vector<std::string> files, uint32_t poll_ms)
      : loop(l) {
    auto w = CertWatcher::create(loop.get(), dir, std::move(files), kSettleMs, poll_ms, [this] {
      ++calls;
      call_times.push_back(uv_now(loop.get()));
      if (also) also();
    });
    REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.message()));
    watcher = std::move(*w);
    CHECK(watcher->eventError().empty());
  }
  ~Watched() {
    watcher->close();
    CHECK(loop.runUntil([this] { return watcher->closed(); }, 1000));
    watcher.reset();
  }
  bool waitCalls(int n, uint64_t timeout_ms = 3000) {
    return loop.runUntil([&] { return calls >= n; }, timeout_ms);
  }
};

}  // namespace

TEST_CASE("CertWatcher: a write in the directory is one change, after the settle time") {
  TempDir tmp;
  const std::string cert = tmp.path + "/proxy_cert.pem";
  writeFile(cert, "v1");
  Loop loop;
  Watched w(loop, tmp.path, {"proxy_cert.pem"}, 0);
  loop.runFor(20);
  CHECK(w.calls == 0);  // nothing changed yet

  uint64_t written = loop.now();
  writeFile(cert, "v2, longer");
  REQUIRE(w.waitCalls(1));
  CHECK(w.call_times[0] - written >= kSettleMs);
  loop.runFor(3 * kSettleMs);
  CHECK(w.calls == 1);
  CHECK(w.watcher->eventsSeen() >= 1);
  CHECK(w.watcher->changesReported() == 1);
}

TEST_CASE("CertWatcher: a burst of 20 writes within 50 ms is exactly one change") {
  TempDir tmp;
  const std::string cert = tmp.path + "/proxy_cert.pem";
  writeFile(cert, "v0");
  Loop loop;
  Watched w(loop, tmp.path, {"proxy_cert.pem", "proxy_key.pem"}, 0);

  // The writes come from a timer on the same loop, so the watcher sees the
  // events spread over the burst rather than in one read.
  struct Burst {
    std::string dir;
    int written = 0;
    uint64_t last = 0;
  } burst{tmp.path};
  uv_timer_t timer;
  uv_timer_init(loop.get(), &timer);
  timer.data = &burst;
  // 4 writes every 5 ms: 20 writes in about 20 ms.
  uv_timer_start(&timer, [](uv_timer_t* t) {
    auto* b = static_cast<Burst*>(t->data);
    for (int i = 0; i < 4; ++i, ++b->written) {
      const char* name = b->written % 2 == 0 ? "/proxy_cert.pem" : "/proxy_key.pem";
      writeFile(b->dir + name, "write " + std::to_string(b->written));
    }
    b->last = uv_now(t->loop);
    if (b->written == 20) uv_timer_stop(t);
  }, 1, 5);
  uint64_t start = loop.now();
  REQUIRE(w.waitCalls(1));
  CHECK(burst.written == 20);
  WARN(burst.last - start <= 50);  // a loaded machine may stretch the burst
  CHECK(w.call_times[0] - burst.last >= kSettleMs);  // measured from the LAST event
  loop.runFor(3 * kSettleMs);
  CHECK(w.calls == 1);
  CHECK(w.watcher->eventsSeen() >= 20);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
}

TEST_CASE("CertWatcher: mv of a new file over the old one (a new inode)") {
  TempDir tmp;
  const std::string dir = tmp.path + "/certs";
  const std::string staging = tmp.path + "/staging";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  REQUIRE(::mkdir(staging.c_str(), 0755) == 0);
  writeFile(dir + "/proxy_cert.pem", "old");
  writeFile(staging + "/proxy_cert.pem", "new");  // outside the watched directory
  Loop loop;
  Watched w(loop, dir, {"proxy_cert.pem"}, 0);
  loop.runFor(20);
  REQUIRE(w.calls == 0);

  REQUIRE(std::rename((staging + "/proxy_cert.pem").c_str(), (dir + "/proxy_cert.pem").c_str()) == 0);
  REQUIRE(w.waitCalls(1));
  loop.runFor(2 * kSettleMs);
  CHECK(w.calls == 1);

  // Editors' write-then-rename inside the directory: also one change.
  writeFile(dir + "/.proxy_cert.pem.swp", "newer");
  REQUIRE(std::rename((dir + "/.proxy_cert.pem.swp").c_str(), (dir + "/proxy_cert.pem").c_str()) == 0);
  REQUIRE(w.waitCalls(2));
  loop.runFor(2 * kSettleMs);
  CHECK(w.calls == 2);
  CHECK(readFile(dir + "/proxy_cert.pem") == "newer");
}

TEST_CASE("CertWatcher: the Kubernetes secret-volume swap of ..data") {
  TempDir tmp;
  const std::string dir = tmp.path;
  // dir/..2026_x/proxy_cert.pem, dir/..data -> ..2026_x,
  // dir/proxy_cert.pem -> ..data/proxy_cert.pem (as the kubelet lays it out).
  REQUIRE(::mkdir((dir + "/..2026_x").c_str(), 0755) == 0);
  writeFile(dir + "/..2026_x/proxy_cert.pem", "generation x");
  REQUIRE(::symlink("..2026_x", (dir + "/..data").c_str()) == 0);
  REQUIRE(::symlink("..data/proxy_cert.pem", (dir + "/proxy_cert.pem").c_str()) == 0);

  std::string seen;
  Loop loop;
  Watched w(loop, dir, {"proxy_cert.pem"}, 0);
  w.also = [&] { seen = readFile(dir + "/proxy_cert.pem"); };
  loop.runFor(20);
  REQUIRE(w.calls == 0);

  // The kubelet's update: a new timestamped directory, a temporary symlink
  // to it, and rename() of that symlink over ..data: one burst, one change,
  // and the callback already reads the new content through the symlinks.
  REQUIRE(::mkdir((dir + "/..2026_y").c_str(), 0755) == 0);
  writeFile(dir + "/..2026_y/proxy_cert.pem", "generation y");
  REQUIRE(::symlink("..2026_y", (dir + "/..data_tmp").c_str()) == 0);
  REQUIRE(std::rename((dir + "/..data_tmp").c_str(), (dir + "/..data").c_str()) == 0);
  std::filesystem::remove_all(dir + "/..2026_x");
  REQUIRE(w.waitCalls(1));
  loop.runFor(2 * kSettleMs);
  CHECK(w.calls == 1);
  CHECK(seen == "generation y");

  // The rename alone (the new directory and symlink prepared elsewhere on
  // the same filesystem, so the only event in dir is the swap itself).
  TempDir staging;
  REQUIRE(::mkdir((dir + "/..2026_z").c_str(), 0755) == 0);
  writeFile(dir + "/..2026_z/proxy_cert.pem", "generation z");
  REQUIRE(w.waitCalls(2));  // the preparation in dir is a change of its own
  loop.runFor(2 * kSettleMs);
  int before = w.calls;
  const std::string tmp_link = tmp.path + "/..2026_z/..data_tmp";  // same filesystem, not dir
  REQUIRE(::symlink("..2026_z", tmp_link.c_str()) == 0);
  loop.runFor(2 * kSettleMs);
  REQUIRE(w.calls == before);  // nothing in dir itself yet
  REQUIRE(std::rename(tmp_link.c_str(), (dir + "/..data").c_str()) == 0);
  REQUIRE(w.waitCalls(before + 1));
  CHECK(seen == "generation z");
}

TEST_CASE("CertWatcher: the poll notices what no event reports") {
  TempDir tmp;
  // A file in a subdirectory: inotify on dir is not recursive, so changing
  // the file's content produces no event in dir; only the poll can see it.
  REQUIRE(::mkdir((tmp.path + "/sub").c_str(), 0755) == 0);
  const std::string cert = tmp.path + "/sub/proxy_cert.pem";
  writeFile(cert, "v1");
  Loop loop;
  Watched w(loop, tmp.path, {"sub/proxy_cert.pem"}, 30);
  loop.runFor(100);
  REQUIRE(w.calls == 0);  // polls that find nothing new stay quiet

  writeFile(cert, "v2, not the same size");
  REQUIRE(w.waitCalls(1));
  loop.runFor(3 * kSettleMs);
  CHECK(w.calls == 1);
  CHECK(w.watcher->eventsSeen() == 0);
  CHECK(w.watcher->pollChangesSeen() == 1);

  // A file that appears or disappears is a change too.
  REQUIRE(std::remove(cert.c_str()) == 0);
  REQUIRE(w.waitCalls(2));
  writeFile(cert, "back");
  REQUIRE(w.waitCalls(3));
  loop.runFor(3 * kSettleMs);
  CHECK(w.calls == 3);
}

TEST_CASE("CertWatcher: a replaced directory is found by the poll and watched again") {
  TempDir tmp;
  const std::string dir = tmp.path + "/certs";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  writeFile(dir + "/proxy_cert.pem", "v1");
  Loop loop;
  Watched w(loop, dir, {"proxy_cert.pem"}, 30);

  // The inotify watch follows the old directory's inode to its new name.
  REQUIRE(std::rename(dir.c_str(), (tmp.path + "/certs.old").c_str()) == 0);
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  writeFile(dir + "/proxy_cert.pem", "v2 in a new directory");
  REQUIRE(w.waitCalls(1));
  loop.runFor(3 * kSettleMs);  // let the poll and any events settle
  CHECK(w.watcher->pollChangesSeen() >= 1);
  CHECK(w.watcher->eventError().empty());

  // The new directory is watched by events again: a write there is reported
  // by an event (and the old directory's are not).
  int before = w.calls;
  uint64_t events = w.watcher->eventsSeen();
  writeFile(tmp.path + "/certs.old/proxy_cert.pem", "old directory, ignored soon");
  loop.runFor(3 * kSettleMs);
  CHECK(w.watcher->eventsSeen() == events);
  CHECK(w.calls == before);
  writeFile(dir + "/proxy_cert.pem", "v3");
  REQUIRE(w.waitCalls(before + 1));
  CHECK(w.watcher->eventsSeen() > events);
}

TEST_CASE("CertWatcher: a directory removed and recreated before a poll is watched again") {
  TempDir tmp;
  const std::string dir = tmp.path + "/certs";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  writeFile(dir + "/proxy_cert.pem", "v1");
  Loop loop;
  // A poll far beyond the test: only events and the re-arm after a burst can
  // notice anything. The new directory may even get the old one's inode,
  // which a poll could not tell apart.
  Watched w(loop, dir, {"proxy_cert.pem"}, 60'000);

  // `rm -rf certs; mkdir certs; cp ...` faster than any poll.
  std::filesystem::remove_all(dir);
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  writeFile(dir + "/proxy_cert.pem", "v2 in a recreated directory");
  REQUIRE(w.waitCalls(1));  // the old directory's removal events
  loop.runFor(3 * kSettleMs);
  CHECK(w.watcher->pollChangesSeen() == 0);

  // The watch was re-armed on the directory that is there now.
  int before = w.calls;
  uint64_t events = w.watcher->eventsSeen();
  writeFile(dir + "/proxy_cert.pem", "v3");
  REQUIRE(w.waitCalls(before + 1));
  CHECK(w.watcher->eventsSeen() > events);
  CHECK(w.watcher->eventError().empty());
}

TEST_CASE("CertWatcher: close() in the callback, and nothing after close") {
  TempDir tmp;
  writeFile(tmp.path + "/proxy_cert.pem", "v1");
  Loop loop;
  Watched w(loop, tmp.path, {"proxy_cert.pem"}, 20);
  w.also = [&] { w.watcher->close(); };
  writeFile(tmp.path + "/proxy_cert.pem", "v2");
  REQUIRE(w.waitCalls(1));
  CHECK(loop.runUntil([&] { return w.watcher->closed(); }, 1000));
  writeFile(tmp.path + "/proxy_cert.pem", "v3, after close");
  loop.runFor(3 * kSettleMs);
  CHECK(w.calls == 1);
  w.watcher->close();  // idempotent
}

TEST_CASE("CertWatcher: a missing directory is an error naming it") {
  TempDir tmp;
  Loop loop;
  int calls = 0;
  auto missing = CertWatcher::create(loop.get(), tmp.path + "/nope", {"proxy_cert.pem"},
                                     kSettleMs, 0, [&] { ++calls; });
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.message() == "cert_dir " + tmp.path + "/nope: cannot watch: no such file or directory");

  writeFile(tmp.path + "/file", "x");
  auto file = CertWatcher::create(loop.get(), tmp.path + "/file", {}, kSettleMs, 0, [&] { ++calls; });
  REQUIRE_FALSE(file.ok());
  CHECK(file.message() == "cert_dir " + tmp.path + "/file: cannot watch: not a directory");
}
