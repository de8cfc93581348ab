// libFuzzer target: any request body either parses into a CompletionRequest or
// throws ApiError (an HTTP 4xx answer) — never crashes. Stop-string matching
// runs over the body too, as streamed text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  for (bool chat : {true, false}) {
    try {
      const dsv2::CompletionRequest r = dsv2::parse_completion_request(body, chat);
      if (!r.stop.empty()) {
        dsv2::StopMatcher m(r.stop);
        for (size_t i = 0; i < body.size() && !m.stopped(); i += 3) m.push(body.substr(i, 3));
        m.flush();
      }
    } catch (const dsv2::ApiError& e) {
      if (e.status < 400 || e.status > 499) __builtin_trap();
    }
  }
  return 0;
}
