#include "server/openai_api.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

namespace dsv2 {

using nlohmann::json;

namespace {
// JSON text for the wire. Invalid UTF-8 (a request's bytes echoed in an error,
// a model's unfinished byte sequence) becomes U+FFFD instead of a throw.
std::string wire_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
}  // namespace

ApiError::ApiError(int s, std::string message, std::string p, std::string c, std::string t)
    : std::runtime_error(std::move(message)), status(s), type(std::move(t)), param(std::move(p)), code(std::move(c)) {}

std::string ApiError::json() const {
  nlohmann::json e = {{"message", what()}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return wire_text(nlohmann::json{{"error", e}});
}

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw ApiError(400, "'" + field + "': " + what, field);
}

double number_field(const json& body, const char* name, double lo, double hi, double fallback) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  const json& v = body[name];
  if (!v.is_number()) bad(name, "must be a number");
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi)) bad(name, "must be between " + json(lo).dump() + " and " + json(hi).dump());
  return x;
}

std::optional<int64_t> integer_field(const json& body, const char* name) {
  if (!body.contains(name) || body[name].is_null()) return std::nullopt;
  if (!body[name].is_number_integer()) bad(name, "must be an integer");
  return body[name].get<int64_t>();
}

// {"token id": bias, ...}: OpenAI's keys are token ids written as strings.
std::vector<LogitBias> logit_bias_field(const json& body) {
  std::vector<LogitBias> biases;
  if (!body.contains("logit_bias") || body["logit_bias"].is_null()) return biases;
  const json& map = body["logit_bias"];
  if (!map.is_object()) bad("logit_bias", "must be an object mapping token ids to numbers");
  for (const auto& [key, value] : map.items()) {
    const bool digits = std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
    const bool id = !key.empty() && key.size() <= 10 && digits;
    if (!id || std::stoll(key) > INT32_MAX) bad("logit_bias", "key '" + key + "' is not a token id");
    if (!value.is_number()) bad("logit_bias", "the bias of token " + key + " must be a number");
    biases.push_back({static_cast<int32_t>(std::stoll(key)), static_cast<float>(value.get<double>())});
  }
  return biases;
}

// OpenAI's message content: a string, or a list of {"type": "text", "text": ...} parts.
std::string message_content(const json& content, const std::string& where) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(where, "must be a string or an array of content parts");
  std::string text;
  for (const json& part : content) {
    const bool text_part = part.is_object() && part.contains("type") && part["type"] == "text" &&
                           part.contains("text") && part["text"].is_string();
    if (!text_part)
      bad(where, "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    text += part["text"].get<std::string>();
  }
  return text;
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}, {"total_tokens", prompt_tokens + completion_tokens}};
}

json envelope(const CompletionRequest& r, const std::string& id, int64_t created, bool chunk) {
  const char* object = r.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", id}, {"object", object}, {"created", created}, {"model", r.model}, {"system_fingerprint", "dsv2"}};
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body_text, bool chat) {
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::exception& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  CompletionRequest r;
  r.chat = chat;
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) bad("model", "must be a string");
    r.model = body["model"].get<std::string>();
  }
  if (chat) {
    if (!body.contains("messages")) throw ApiError(400, "'messages' is required", "messages");
    const json& messages = body["messages"];
    if (!messages.is_array() || messages.empty()) bad("messages", "must be a non-empty array");
    for (size_t i = 0; i < messages.size(); ++i) {
      const std::string where = "messages[" + std::to_string(i) + "]";
      const json& m = messages[i];
      if (!m.is_object()) bad(where, "must be an object");
      if (!m.contains("role") || !m["role"].is_string()) bad(where + ".role", "must be a string");
      const std::string role = m["role"].get<std::string>();
      if (role != "system" && role != "user" && role != "assistant" && role != "developer")
        bad(where + ".role", "must be one of system, developer, user, assistant");
      r.messages.push_back({role == "developer" ? "system" : role, message_content(m.value("content", json()), where + ".content")});
    }
  } else {
    if (!body.contains("prompt")) throw ApiError(400, "'prompt' is required", "prompt");
    const json& p = body["prompt"];
    if (p.is_string())
      r.prompt = p.get<std::string>();
    else if (p.is_array() && p.size() == 1 && p[0].is_string())
      r.prompt = p[0].get<std::string>();
    else
      bad("prompt", "must be a string (or an array holding one string)");
  }
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    const auto n = integer_field(body, name);
    if (n && *n < 1) bad(name, "must be at least 1");
    if (n) r.max_tokens = n;
  }
  SamplingOptions& s = r.sampling;
  s.temperature = static_cast<float>(number_field(body, "temperature", 0.0, 2.0, 1.0));
  s.top_p = static_cast<float>(number_field(body, "top_p", 0.0, 1.0, 1.0));
  if (s.top_p == 0.0f) s.top_p = 1e-6f;  // OpenAI accepts 0: keep only the most likely token
  s.frequency_penalty = static_cast<float>(number_field(body, "frequency_penalty", -2.0, 2.0, 0.0));
  s.presence_penalty = static_cast<float>(number_field(body, "presence_penalty", -2.0, 2.0, 0.0));
  s.logit_bias = logit_bias_field(body);
  s.min_p = static_cast<float>(number_field(body, "min_p", 0.0, 1.0, 0.0));
  constexpr double kAny = std::numeric_limits<double>::max();  // the range is find_sampling_problem's
  s.repeat_penalty = static_cast<float>(number_field(body, "repeat_penalty", -kAny, kAny, 1.0));
  s.top_k = integer_field(body, "top_k").value_or(0);
  s.repeat_last_n = integer_field(body, "repeat_last_n").value_or(s.repeat_last_n);
  // What number_field cannot say (repeat_penalty > 0, repeat_last_n >= -1, top_k >= 0, biases in range).
  if (auto problem = find_sampling_problem(s, 0)) bad(problem->field, problem->message);
  if (auto seed = integer_field(body, "seed")) r.seed = static_cast<uint64_t>(*seed);
  if (integer_field(body, "n").value_or(1) != 1) bad("n", "only n = 1 is supported");
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& s = body["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array() && s.size() <= 4) {
      for (const json& x : s) {
        if (!x.is_string()) bad("stop", "must be a string or an array of up to 4 strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "must be a string or an array of up to 4 strings");
    }
    for (const auto& x : r.stop)
      if (x.empty()) bad("stop", "stop strings must not be empty");
  }
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) bad("stream", "must be a boolean");
    r.stream = body["stream"].get<bool>();
  }
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& o = body["stream_options"];
    if (!o.is_object()) bad("stream_options", "must be an object");
    if (o.contains("include_usage")) {
      if (!o["include_usage"].is_boolean()) bad("stream_options.include_usage", "must be a boolean");
      r.include_usage = o["include_usage"].get<bool>();
    }
  }
  return r;
}

std::string completion_response(const CompletionRequest& r, const std::string& id, int64_t created,
                                const CompletionResult& result) {
  json out = envelope(r, id, created, false);
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", result.finish_reason}};
  if (r.chat)
    choice["message"] = {{"role", "assistant"}, {"content", result.text}};
  else
    choice["text"] = result.text;
  out["choices"] = json::array({choice});
  out["usage"] = usage_json(result.prompt_tokens, result.completion_tokens);
  return wire_text(out);
}

std::string completion_chunk(const CompletionRequest& r, const std::string& id, int64_t created, const std::string& text,
                             const std::string& finish_reason, bool first) {
  json out = envelope(r, id, created, true);
  json choice = {{"index", 0}, {"logprobs", nullptr},
                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (r.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && finish_reason.empty())) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  out["choices"] = json::array({choice});
  return wire_text(out);
}

std::string usage_chunk(const CompletionRequest& r, const std::string& id, int64_t created, int64_t prompt_tokens,
                        int64_t completion_tokens) {
  json out = envelope(r, id, created, true);
  out["choices"] = json::array();
  out["usage"] = usage_json(prompt_tokens, completion_tokens);
  return wire_text(out);
}

std::string StopMatcher::push(const std::string& text) {
  if (stopped_) return "";
  held_ += text;
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is the beginning of some stop string.
  size_t keep = 0;
  for (const auto& s : stops_)
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n)
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out = stopped_ ? "" : held_;
  held_.clear();
  return out;
}

}  // namespace dsv2
