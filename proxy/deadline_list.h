// DeadlineList: a worker's connections waiting for one kind of deadline (the
// TLS handshake, the flush before a close), earliest first. Every entry of a
// list waits about as long, so a new one goes at the tail and adding,
// removing and finding the earliest cost O(1). The worker keeps one timer for
// all its connections instead of a libuv timer each: 152 bytes less per
// connection, and no timer-heap operation per handshake.
#pragma once

#include <cstdint>

namespace shardgate::proxy {

// A worker keeps one list per kind: the entries of one kind all wait the
// same time, so they arrive in due order.
enum class DeadlineKind { kHandshake, kFlushBeforeClose };

template <class Owner>
class DeadlineList;

// One connection's place in a DeadlineList, in at most one list at a time:
// a base of Owner, so an entry is its owner (no pointer back).
template <class Owner>
struct Deadline {
  Deadline() = default;
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  Owner& owner() { return static_cast<Owner&>(*this); }

  uint64_t due_ms = 0;
  Deadline* prev = nullptr;
  Deadline* next = nullptr;
  DeadlineList<Owner>* list = nullptr;  // null: not waiting
};

template <class Owner>
class DeadlineList {
 public:
  // Moves d here (out of any other list), due at due_ms.
  void add(Deadline<Owner>& d, uint64_t due_ms) {
    if (d.list) d.list->remove(d);
    d.due_ms = due_ms;
    d.list = this;
    // From the tail: only a timeout shortened by a reload walks back.
    Deadline<Owner>* after = tail_;
    while (after && after->due_ms > due_ms) after = after->prev;
    d.prev = after;
    d.next = after ? after->next : head_;
    if (d.next) d.next->prev = &d;
    else tail_ = &d;
    if (after) after->next = &d;
    else head_ = &d;
  }

  void remove(Deadline<Owner>& d) {
    if (d.list != this) return;
    if (d.prev) d.prev->next = d.next;
    else head_ = d.next;
    if (d.next) d.next->prev = d.prev;
    else tail_ = d.prev;
    d.prev = d.next = nullptr;
    d.list = nullptr;
  }

  Deadline<Owner>* front() const { return head_; }
  bool empty() const { return head_ == nullptr; }

 private:
  Deadline<Owner>* head_ = nullptr;
  Deadline<Owner>* tail_ = nullptr;
};

}  // namespace shardgate::proxy
