// The block scales of a q8/q4 row (ops/kernels.h), read in place in the format
// they are stored in: IEEE float16, what dsv2 writes since issue 17 (8.5 and
// 4.5 bits per weight), or float32, what older files hold and what the
// quantized latent cache keeps (its AMX path reads float scales). Decoding is
// bandwidth-bound, so the kernels read float16 scales as they are rather than
// widening a matrix's scales to float32 at load, which would read more bytes
// per token than the narrower scales save.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace dsv2 {

struct BlockScales {
  const void* data = nullptr;
  bool f16 = false;  // float16 bits, else float32

  BlockScales() = default;
  // float32 scales (implicit: the latent cache's and every float buffer of scales)
  BlockScales(const float* scales) : data(scales) {}  // NOLINT(google-explicit-constructor)
  static BlockScales half(const uint16_t* bits) {
    BlockScales s;
    s.data = bits;
    s.f16 = true;
    return s;
  }

  const float* f32() const { return f16 ? nullptr : static_cast<const float*>(data); }
  const uint16_t* f16_bits() const { return f16 ? static_cast<const uint16_t*>(data) : nullptr; }
  float operator[](int64_t b) const { return f16 ? f16_to_float(f16_bits()[b]) : f32()[b]; }
  // The scales from block `blocks` on.
  BlockScales operator+(int64_t blocks) const {
    BlockScales s = *this;
    s.data = static_cast<const std::byte*>(data) + blocks * (f16 ? 2 : 4);
    return s;
  }
  explicit operator bool() const { return data != nullptr; }
};

}  // namespace dsv2
