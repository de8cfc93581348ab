// libFuzzer target: config.json text either parses into a validated Config (and
// the RoPE tables built from it) or throws dsv2::Error — never crashes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "model/config.h"
#include "model/rope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dsv2::Config config = dsv2::parse_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
    dsv2::Rope rope(config);
    float x[512] = {};
    rope.apply(x, 1, config.qk_rope_head_dim, 7);
  } catch (const dsv2::Error&) {
  }
  return 0;
}
