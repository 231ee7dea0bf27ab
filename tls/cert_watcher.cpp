// CertWatcher: libuv glue. Each handle's data points back at the watcher;
// callbacks check close_requested_ so one that libuv already queued when
// close() ran does nothing (a no-op by design).
#include "tls/cert_watcher.h"

#include <sys/stat.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <utility>

namespace shardgate::tls {
namespace {

template <typename Handle>
uv_handle_t* asHandle(Handle* h) {
  return reinterpret_cast<uv_handle_t*>(h);
}

CertWatcher* watcherOf(const uv_handle_t* h) { return static_cast<CertWatcher*>(h->data); }

}  // namespace

bool CertWatcher::FileSignature::operator==(const FileSignature& o) const {
  return error == o.error && dev == o.dev && ino == o.ino && size == o.size &&
         mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
}

CertWatcher::CertWatcher(uv_loop_t* loop, std::string dir, std::vector<std::string> file_names,
                         uint32_t settle_ms, uint32_t poll_ms, std::function<void()> on_change)
    : loop_(loop),
      dir_(std::move(dir)),
      file_names_(std::move(file_names)),
      settle_ms_(settle_ms),
      poll_ms_(poll_ms),
      on_change_(std::move(on_change)) {}

CertWatcher::~CertWatcher() {
  // Destroying the watcher while libuv still holds its handles would leave
  // the loop pointing into freed memory: close() first, run the loop, then
  // destroy.
  assert(closed() && "CertWatcher destroyed before close() and its close callbacks");
}

Result<std::unique_ptr<CertWatcher>> CertWatcher::create(uv_loop_t* loop, std::string dir,
                                                         std::vector<std::string> file_names,
                                                         uint32_t settle_ms, uint32_t poll_ms,
                                                         std::function<void()> on_change) {
  assert(loop != nullptr && on_change);
  // Checked before any handle exists, so the common failure frees plainly.
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return makeError("cert_dir " + dir + ": cannot watch: " + uv_strerror(uv_translate_sys_error(errno)));
  }
  if (!S_ISDIR(st.st_mode)) return makeError("cert_dir " + dir + ": cannot watch: not a directory");

  std::unique_ptr<CertWatcher> w(new CertWatcher(loop, std::move(dir), std::move(file_names),
                                                 settle_ms, poll_ms, std::move(on_change)));
  uv_fs_event_init(loop, &w->event_);
  uv_timer_init(loop, &w->settle_timer_);
  uv_timer_init(loop, &w->poll_timer_);
  w->open_handles_ = 3;
  for (uv_handle_t* h : {asHandle(&w->event_), asHandle(&w->settle_timer_), asHandle(&w->poll_timer_)}) {
    h->data = w.get();
  }

  w->last_signature_ = w->signature();
  w->event_error_ = w->armEvents();
  if (!w->event_error_.empty() && poll_ms == 0) {
    std::string message = "cert_dir " + w->dir_ + ": cannot watch for changes: " + w->event_error_;
    // The handles are the loop's now; the watcher frees itself once they close.
    w->delete_when_closed_ = true;
    w->close();
    static_cast<void>(w.release());
    return makeError(std::move(message));
  }
  if (poll_ms > 0) {
    uv_timer_start(&w->poll_timer_, [](uv_timer_t* t) { watcherOf(asHandle(t))->poll(); },
                   poll_ms, poll_ms);
  }
  return w;
}

std::string CertWatcher::armEvents() {
  if (event_active_) {
    uv_fs_event_stop(&event_);
    event_active_ = false;
  }
  int rc = uv_fs_event_start(
      &event_,
      [](uv_fs_event_t* h, const char*, int, int) {
        CertWatcher* self = watcherOf(asHandle(h));
        if (self->close_requested_) return;
        // Any event at all, whatever the name and even an error status: the
        // reload itself decides whether anything it reads has changed.
        ++self->events_seen_;
        self->changed();
      },
      dir_.c_str(), 0);
  if (rc != 0) return uv_strerror(rc);
  event_active_ = true;
  return {};
}

std::vector<CertWatcher::FileSignature> CertWatcher::signature() const {
  auto statOf = [](const std::string& path) {
    FileSignature sig;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {  // stat, not lstat: through ..data
      sig.error = errno;
      return sig;
    }
    sig.dev = st.st_dev;
    sig.ino = st.st_ino;
    sig.size = st.st_size;
    sig.mtime = st.st_mtim;
    return sig;
  };
  std::vector<FileSignature> sigs;
  sigs.reserve(file_names_.size() + 1);
  // The directory only by identity: its mtime moves with every temporary
  // file, and the files themselves are compared in full below.
  FileSignature d = statOf(dir_);
  d.size = 0;
  d.mtime = {};
  sigs.push_back(d);
  for (const std::string& name : file_names_) sigs.push_back(statOf(dir_ + "/" + name));
  return sigs;
}

void CertWatcher::changed() {
  // Settle after the last event, but never wait longer than a few settle
  // times from the first one: files replaced faster than the settle time
  // (a rotation every 50 ms) would otherwise postpone the reload forever.
  uint64_t now = uv_now(loop_);
  if (burst_start_ms_ == 0) burst_start_ms_ = now;
  uint64_t deadline = burst_start_ms_ + uint64_t{settle_ms_} * kMaxBurstSettles;
  uint64_t delay = deadline > now ? std::min<uint64_t>(settle_ms_, deadline - now) : 0;
  uv_timer_start(&settle_timer_, [](uv_timer_t* t) { watcherOf(asHandle(t))->settled(); }, delay, 0);
}

void CertWatcher::settled() {
  burst_start_ms_ = 0;
  if (close_requested_) return;
  // What the reload is about to read is the new baseline, so the poll does
  // not report the same change again.
  last_signature_ = signature();
  // Watch the directory that is there now. After `rm -rf cert_dir` the
  // watch is dead (the kernel dropped it with the old inode), and a directory
  // recreated between two polls may even reuse that inode, which the poll's
  // identity check cannot tell from the old one. Re-arming once per burst is
  // one inotify call; a change right after it raises an event, and one just
  // before it is read by the reload this burst triggers.
  event_error_ = armEvents();
  ++changes_reported_;
  on_change_();  // may close() us; nothing below touches the handles
}

void CertWatcher::poll() {
  if (close_requested_) return;
  std::vector<FileSignature> now = signature();
  if (now == last_signature_) return;
  // A new directory inode (the directory was replaced, or came back) means
  // the inotify watch, if any, is on the old one: watch the new one.
  const bool dir_replaced = !(now[0] == last_signature_[0]);
  last_signature_ = std::move(now);
  ++poll_changes_seen_;
  if (dir_replaced || !event_active_) event_error_ = armEvents();
  changed();
}

void CertWatcher::close() {
  if (close_requested_) return;
  close_requested_ = true;
  closeHandle(asHandle(&event_));
  closeHandle(asHandle(&settle_timer_));
  closeHandle(asHandle(&poll_timer_));
}

void CertWatcher::closeHandle(uv_handle_t* handle) {
  uv_close(handle, [](uv_handle_t* h) {
    CertWatcher* self = watcherOf(h);
    assert(self->open_handles_ > 0);
    if (--self->open_handles_ == 0 && self->delete_when_closed_) delete self;
  });
}

}  // namespace shardgate::tls
