// libFuzzer target: any request body either parses into a CompletionRequest or
// throws ApiError (an HTTP 4xx answer) — never crashes. Stop-string matching
// runs over the body too, as streamed text, and the response (with logprobs
// whose token bytes are pieces of the body: any bytes, split UTF-8 included)
// is written for every request that parses.
#include <cstddef>
#include <cstdint>
#include <optional>
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
      dsv2::CompletionResult result{body, "stop", 1, 2, {}};
      for (size_t i = 0; i < body.size() && i < 64; i += 5)
        result.logprobs.push_back({body.substr(i, 5), i == 0 ? std::nullopt : std::optional<double>(-0.5 * i),
                                   {{body.substr(i, 3), -0.1}}, static_cast<int64_t>(i)});
      dsv2::completion_response(r, "id", 0, {result, result});
      dsv2::completion_chunk(r, "id", 0, body, "", true, result.logprobs);
    } catch (const dsv2::ApiError& e) {
      if (e.status < 400 || e.status > 499) __builtin_trap();
    }
  }
  return 0;
}
