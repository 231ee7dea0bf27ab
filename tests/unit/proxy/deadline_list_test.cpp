#include <doctest/doctest.h>

#include <vector>

#include "proxy/deadline_list.h"

using shardgate::proxy::Deadline;
using shardgate::proxy::DeadlineList;

namespace {

struct Conn : Deadline<Conn> {
  explicit Conn(int i) : id(i) {}
  int id;
};

std::vector<int> order(const DeadlineList<Conn>& list) {
  std::vector<int> ids;
  for (Deadline<Conn>* d = list.front(); d; d = d->next) ids.push_back(d->owner().id);
  return ids;
}

}  // namespace

TEST_CASE("deadline list: entries come out earliest first, whatever order they were added in") {
  DeadlineList<Conn> list;
  Conn a(1), b(2), c(3), d(4);
  list.add(a, 100);
  list.add(b, 200);
  list.add(c, 300);
  CHECK(order(list) == std::vector<int>{1, 2, 3});
  // A timeout shortened by a reload: the new entry is due before older ones.
  list.add(d, 150);
  CHECK(order(list) == std::vector<int>{1, 4, 2, 3});
  CHECK(list.front()->due_ms == 100);
}

TEST_CASE("deadline list: removing from the head, middle and tail keeps the order; an entry moves between lists") {
  DeadlineList<Conn> handshakes, flushes;
  Conn a(1), b(2), c(3);
  handshakes.add(a, 10);
  handshakes.add(b, 20);
  handshakes.add(c, 30);
  handshakes.remove(b);
  CHECK(order(handshakes) == std::vector<int>{1, 3});
  CHECK(b.list == nullptr);
  handshakes.remove(b);  // not in it: nothing happens
  CHECK(order(handshakes) == std::vector<int>{1, 3});
  flushes.add(a, 5);  // leaves handshakes
  CHECK(order(handshakes) == std::vector<int>{3});
  CHECK(order(flushes) == std::vector<int>{1});
  handshakes.remove(c);
  CHECK(handshakes.empty());
  flushes.remove(a);
  CHECK(flushes.empty());
  CHECK(a.prev == nullptr);
  CHECK(a.next == nullptr);
}
