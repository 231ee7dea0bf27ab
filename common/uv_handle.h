// The one cast every libuv handle type needs to be closed or ref'd as a
// uv_handle_t (they all start with the uv_handle_t fields).
#pragma once

#include <uv.h>

namespace shardgate {

template <typename T>
uv_handle_t* asHandle(T* h) {
  return reinterpret_cast<uv_handle_t*>(h);
}

}  // namespace shardgate
