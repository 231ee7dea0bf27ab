#include "common/byte_buffer.h"

#include <doctest/doctest.h>

#include <string>

using shardgate::ByteBuffer;

TEST_CASE("ByteBuffer starts empty and holds no memory") {
  ByteBuffer b;
  CHECK(b.empty());
  CHECK(b.size() == 0);
  CHECK(b.capacity() == 0);
  CHECK(b.view().empty());
}

TEST_CASE("ByteBuffer append and consume") {
  ByteBuffer b;
  b.append("hello ");
  b.append("world");
  CHECK(b.view() == "hello world");
  b.consume(6);
  CHECK(b.view() == "world");
  b.consume(5);
  CHECK(b.empty());
  b.append("again");
  CHECK(b.view() == "again");
  b.append(nullptr, 0);
  CHECK(b.size() == 5);
}

TEST_CASE("ByteBuffer prepare and commit") {
  ByteBuffer b;
  uint8_t* p = b.prepare(10);
  CHECK(b.writable() >= 10);
  std::memcpy(p, "0123456789", 10);
  b.commit(4);
  CHECK(b.view() == "0123");
}

TEST_CASE("ByteBuffer grows keeping content, and reuses the consumed front") {
  ByteBuffer b;
  std::string expect;
  for (int i = 0; i < 10000; ++i) {
    std::string chunk = std::to_string(i) + ",";
    b.append(chunk);
    expect += chunk;
  }
  CHECK(b.view() == expect);
  CHECK(b.capacity() >= expect.size());

  // Consume most of it; a further append fits after compaction, no growth.
  size_t cap = b.capacity();
  b.consume(expect.size() - 10);
  std::string tail = expect.substr(expect.size() - 10);
  std::string more(cap / 4, 'x');
  b.append(more);
  CHECK(b.capacity() == cap);
  CHECK(b.view() == tail + more);
}

TEST_CASE("ByteBuffer large single append") {
  ByteBuffer b;
  b.append("ab");
  std::string big(1 << 20, 'z');
  b.append(big);
  CHECK(b.size() == big.size() + 2);
  CHECK(b.view().substr(0, 3) == "abz");
}

TEST_CASE("ByteBuffer release gives the memory back") {
  ByteBuffer b;
  b.append("x");
  b.consume(1);
  b.release();
  CHECK(b.capacity() == 0);
  b.append("y");
  CHECK(b.view() == "y");
}

TEST_CASE("ByteBuffer move and swap") {
  ByteBuffer a;
  a.append("abc");
  ByteBuffer b(std::move(a));
  CHECK(b.view() == "abc");
  CHECK(a.empty());
  ByteBuffer c;
  c.append("zz");
  c = std::move(b);
  CHECK(c.view() == "abc");
  c.clear();
  CHECK(c.empty());
}
