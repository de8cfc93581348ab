// The OpenAI wire format: request bodies in (validated, with errors that name
// the offending field) and response / stream-chunk JSON out, shaped exactly as
// api.openai.com shapes them so that the official clients parse them.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/chat_format.h"
#include "runtime/sampler.h"

namespace dsv2 {

// An error as OpenAI reports it: HTTP status + {"error": {message, type, param, code}}.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, std::string message, std::string param = "", std::string code = "",
           std::string type = "invalid_request_error");
  std::string json() const;
};

struct CompletionRequest {
  bool chat = false;
  std::string model;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions
  std::optional<int64_t> max_tokens;
  // OpenAI's temperature, top_p, frequency_penalty, presence_penalty and
  // logit_bias, and llama.cpp's top_k, min_p, repeat_penalty and repeat_last_n;
  // all off unless given. Ranges checked, except logit_bias ids against the
  // vocabulary (the parser does not know it). sampling.seed is unused: see seed.
  SamplingOptions sampling;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false;
};

// Throws ApiError(400) naming the field for malformed JSON, wrong types or
// values out of range.
CompletionRequest parse_completion_request(const std::string& body, bool chat);

struct CompletionResult {
  std::string text, finish_reason;
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

// Whole responses ("chat.completion" / "text_completion").
std::string completion_response(const CompletionRequest& request, const std::string& id, int64_t created,
                                const CompletionResult& result);
// One server-sent event's JSON ("chat.completion.chunk" / "text_completion").
// `first` adds the assistant role (chat); a finish_reason ends the choice.
std::string completion_chunk(const CompletionRequest& request, const std::string& id, int64_t created,
                             const std::string& text, const std::string& finish_reason, bool first);
// The usage-only chunk sent last when stream_options.include_usage is set.
std::string usage_chunk(const CompletionRequest& request, const std::string& id, int64_t created,
                        int64_t prompt_tokens, int64_t completion_tokens);

// Finds stop strings in streamed text: releases only what can no longer turn
// out to be the start of a stop string.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Text that is safe to send; sets stopped() once a stop string appeared
  // (the stop string and anything after it are never released).
  std::string push(const std::string& text);
  std::string flush();  // at the end: whatever was held back
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace dsv2
