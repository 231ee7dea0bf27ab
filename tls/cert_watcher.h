// CertWatcher: notices that the certificate directory changed and says so
// once per burst. It watches the DIRECTORY (uv_fs_event), not the files:
// editors and `mv` replace a file's inode, and a Kubernetes secret volume
// swaps its `..data` symlink to a new timestamped directory by rename(), so
// a watch on proxy_cert.pem itself would go deaf after the first change.
//
//   fs event in dir ──┐
//                     ├─► (re)start settle timer ──settle_ms after the LAST──► on_change()
//   poll: signature ──┘     trigger (but at most kMaxBurstSettles settle times
//   of file_names differs   after the first), so a burst of writes is one change
//
// The poll (every poll_ms, 0 = off) stats each watched file through its
// symlinks and compares (st_dev, st_ino, st_size, st_mtim) with the last
// time; it covers filesystems without events and a watch lost because the
// directory itself was removed or replaced (then the watch is re-armed on
// the new one). Each settled burst re-arms the watch as well, so a directory
// deleted and recreated is watched again whichever noticed first.
//
// Lifetime: the watcher owns three libuv handles embedded in
// itself. Call close() on the loop's thread, then let the loop run until
// closed() is true before destroying it; the destructor asserts that.
// Everything runs on the loop's thread; on_change() may call close().
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace shardgate::tls {

class CertWatcher {
 public:
  // Fails (naming dir) when dir is not a directory, or when the directory
  // cannot be watched and poll_ms is 0. With a poll, a directory that cannot
  // be watched is polled only; eventError() says why.
  static Result<std::unique_ptr<CertWatcher>> create(uv_loop_t* loop, std::string dir,
                                                     std::vector<std::string> file_names,
                                                     uint32_t settle_ms, uint32_t poll_ms,
                                                     std::function<void()> on_change);
  ~CertWatcher();
  CertWatcher(const CertWatcher&) = delete;
  CertWatcher& operator=(const CertWatcher&) = delete;

  // Stops watching and closes the handles; on_change() is not called again.
  // Idempotent. The object stays in use by libuv until closed().
  void close();
  // close() was called and every close callback has run: safe to destroy.
  bool closed() const { return close_requested_ && open_handles_ == 0; }

  // Counters for logs and metrics. A poll change that events never reported
  // means events are not working on this filesystem (or the watch was lost).
  uint64_t eventsSeen() const { return events_seen_; }
  uint64_t pollChangesSeen() const { return poll_changes_seen_; }
  uint64_t changesReported() const { return changes_reported_; }
  // Why the directory is polled only (empty while events work).
  const std::string& eventError() const { return event_error_; }

 private:
  // What stat() says about one path, or the errno it failed with, so a file
  // appearing or disappearing is a difference too.
  struct FileSignature {
    int error = 0;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    struct timespec mtime {};
    bool operator==(const FileSignature& o) const;
  };

  CertWatcher(uv_loop_t* loop, std::string dir, std::vector<std::string> file_names,
              uint32_t settle_ms, uint32_t poll_ms, std::function<void()> on_change);

  // Starts (or restarts) the directory watch. Empty on success.
  std::string armEvents();
  // The directory's own signature first, then each of file_names.
  std::vector<FileSignature> signature() const;
  void changed();  // restart the settle timer
  void settled();
  void poll();
  void closeHandle(uv_handle_t* handle);

  uv_loop_t* loop_;
  std::string dir_;
  std::vector<std::string> file_names_;
  static constexpr uint64_t kMaxBurstSettles = 3;
  uint32_t settle_ms_;
  uint32_t poll_ms_;
  uint64_t burst_start_ms_ = 0;  // loop time of the first event of the burst, 0 = none
  std::function<void()> on_change_;

  uv_fs_event_t event_{};
  uv_timer_t settle_timer_{};
  uv_timer_t poll_timer_{};
  bool event_active_ = false;
  std::vector<FileSignature> last_signature_;

  int open_handles_ = 0;
  bool close_requested_ = false;
  // Set when create() fails after the handles were initialized: nobody holds
  // the object, so the last close callback frees it.
  bool delete_when_closed_ = false;
  uint64_t events_seen_ = 0;
  uint64_t poll_changes_seen_ = 0;
  uint64_t changes_reported_ = 0;
  std::string event_error_;
};

}  // namespace shardgate::tls
