// Counts heap bytes while a test asks, to prove a parser allocates nothing
// per command once warm and nothing sized by a declared length. The global
// operator new it replaces (allocation_counter.cpp) is per program; outside
// a counted stretch it only forwards to malloc.
#pragma once

#include <cstddef>

namespace shardgate::test {

void startCounting();
size_t stopCounting();  // the bytes allocated since startCounting()

size_t allocatedBy(auto&& fn) {
  startCounting();
  fn();
  return stopCounting();
}

}  // namespace shardgate::test
