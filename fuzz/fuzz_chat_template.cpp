// libFuzzer target: any chat template either parses and renders (or fails to
// render) with dsv2::Error — never crashes or hangs on recursion.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "runtime/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dsv2::ChatTemplate t(std::string(reinterpret_cast<const char*>(data), size));
    t.render_chat({{"system", "sys"}, {"user", "Hello 你好"}, {"assistant", "<think>x</think>hi"}}, "<s>", "</s>", true);
  } catch (const dsv2::Error&) {
  }
  return 0;
}
