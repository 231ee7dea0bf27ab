#include "tests/unit/redis/allocation_counter.h"

#include <cstdlib>
#include <new>

namespace {
bool g_counting = false;
size_t g_allocated = 0;
}  // namespace

// g++ cannot see that this new and delete are a malloc/free pair.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t size) {
  if (g_counting) g_allocated += size;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace shardgate::test {

void startCounting() {
  g_allocated = 0;
  g_counting = true;
}

size_t stopCounting() {
  g_counting = false;
  return g_allocated;
}

}  // namespace shardgate::test
