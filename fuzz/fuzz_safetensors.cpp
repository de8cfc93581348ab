// libFuzzer target: any byte string given to the safetensors parser must either
// parse into in-bounds tensors or throw dsv2::Error — never crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string name = "fuzz.safetensors";
  try {
    const auto* bytes = reinterpret_cast<const std::byte*>(data);
    for (const auto& t : dsv2::parse_safetensors(bytes, size, &name)) {
      // Touch the first and last byte of every tensor: ASan flags any lie we let through.
      if (t.nbytes) {
        volatile std::byte first = t.data[0], last = t.data[t.nbytes - 1];
        (void)first, (void)last;
      }
    }
  } catch (const dsv2::Error&) {
  }
  return 0;
}
