// Reusable activation buffers. Each slot grows to the largest size asked of it
// and is then reused, so steady-state decoding does not allocate.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

namespace dsv2 {

class Scratch {
 public:
  float* get(size_t slot, size_t count) {
    auto& buffer = buffers_.at(slot);
    if (buffer.size() < count) buffer.resize(count);
    return buffer.data();
  }

 private:
  std::array<std::vector<float>, 16> buffers_;
};

}  // namespace dsv2
