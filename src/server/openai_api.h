// The OpenAI wire format: request bodies in (validated, with errors that name
// the offending field) and response / stream-chunk JSON out, shaped exactly as
// api.openai.com shapes them so that the official clients parse them.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
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

// One prompt of /v1/completions: text, which the server tokenizes (BOS
// added), or token ids, used as they are.
struct Prompt {
  std::string text;
  std::vector<int32_t> ids;
  bool is_ids = false;
};

// The most a request may ask for per token (OpenAI's legacy completions allow
// 5 and its chat 20; vLLM's default limit is 20).
inline constexpr int kMaxTopLogprobs = 20;

struct CompletionRequest {
  bool chat = false;
  std::string model;
  std::vector<ChatMessage> messages;  // chat
  std::vector<Prompt> prompts;        // completions: one choice each
  std::optional<int64_t> max_tokens;  // 0 only with echo
  // -1: no log-probabilities; else that many alternatives per token
  // (completions' `logprobs`; chat's `top_logprobs`, with `logprobs: true`).
  int top_logprobs = -1;
  bool echo = false;  // completions: the prompt first, in the text and the logprobs
  // OpenAI's temperature, top_p, frequency_penalty, presence_penalty and
  // logit_bias, and llama.cpp's top_k, min_p, repeat_penalty and repeat_last_n;
  // all off unless given. Ranges checked, except logit_bias ids against the
  // vocabulary (the parser does not know it). sampling.seed is unused: see seed.
  SamplingOptions sampling;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false;
};

// A request body that must be a JSON object; ApiError(400) otherwise.
nlohmann::json parse_json_object(const std::string& body);

// Throws ApiError(400) naming the field for malformed JSON, wrong types or
// values out of range.
CompletionRequest parse_completion_request(const std::string& body, bool chat);

// One token of a response's logprobs, as the server found it.
struct LogprobEntry {
  std::string bytes;              // the token's bytes (a special token's text)
  std::optional<double> logprob;  // none: the first prompt token, which nothing predicts
  std::vector<std::pair<std::string, double>> top;  // the most likely tokens' bytes, most likely first
  int64_t text_offset = 0;        // completions: characters of the choice's text before the token
};

struct CompletionResult {
  std::string text, finish_reason;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  std::vector<LogprobEntry> logprobs;  // when the request asked for them
};

// A token's bytes as a JSON string: valid UTF-8 as it is, each byte of an
// incomplete or invalid sequence as the text \xNN (as DeepSeek's API writes
// the pieces of a character split over tokens; chat also gives the bytes).
std::string token_text(const std::string& bytes);

// Whole responses ("chat.completion" / "text_completion"), one choice per result.
std::string completion_response(const CompletionRequest& request, const std::string& id, int64_t created,
                                const std::vector<CompletionResult>& results);
// One server-sent event's JSON ("chat.completion.chunk" / "text_completion").
// `first` adds the assistant role (chat); a finish_reason ends the choice;
// `logprobs` are those of the tokens this chunk reports.
std::string completion_chunk(const CompletionRequest& request, const std::string& id, int64_t created,
                             const std::string& text, const std::string& finish_reason, bool first,
                             const std::vector<LogprobEntry>& logprobs = {});
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
