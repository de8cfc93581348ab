#include "server/openai_api.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "tokenizer/unicode.h"

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

bool bool_field(const json& body, const char* name) {
  if (!body.contains(name) || body[name].is_null()) return false;
  if (!body[name].is_boolean()) bad(name, "must be a boolean");
  return body[name].get<bool>();
}

// A prompt of token ids: a non-empty array of integers in int32's range (the
// vocabulary is checked by the server, which knows it).
std::optional<std::vector<int32_t>> token_ids(const json& array) {
  if (!array.is_array() || array.empty() || !array[0].is_number_integer()) return std::nullopt;
  std::vector<int32_t> ids;
  for (const json& x : array) {
    if (!x.is_number_integer()) bad("prompt", "an array of token ids must hold only integers");
    if (!x.is_number_unsigned() || x.get<uint64_t>() > static_cast<uint64_t>(INT32_MAX))
      bad("prompt", "token id " + x.dump() + " is not a token id");
    ids.push_back(static_cast<int32_t>(x.get<uint64_t>()));
  }
  return ids;
}

// OpenAI's prompt: a string, or an array of strings, of token ids, or of
// arrays of token ids (several prompts: one choice each).
std::vector<Prompt> prompts_field(const json& p) {
  const char* shape = "must be a string, or an array of strings, of token ids or of arrays of token ids";
  if (p.is_string()) return {Prompt{p.get<std::string>(), {}, false}};
  if (!p.is_array() || p.empty()) bad("prompt", shape);
  if (auto ids = token_ids(p)) return {Prompt{"", std::move(*ids), true}};
  std::vector<Prompt> prompts;
  for (const json& x : p) {
    if (x.is_string())
      prompts.push_back({x.get<std::string>(), {}, false});
    else if (auto ids = token_ids(x))
      prompts.push_back({"", std::move(*ids), true});
    else
      bad("prompt", shape);
  }
  return prompts;
}

// Completions: `logprobs` N; chat: `logprobs` true, then `top_logprobs` N (default 0).
int top_logprobs_field(const json& body, bool chat) {
  const std::string range = "must be an integer between 0 and " + std::to_string(kMaxTopLogprobs);
  auto count = [&](const char* name) {
    const auto n = integer_field(body, name);
    if (n && (*n < 0 || *n > kMaxTopLogprobs)) bad(name, range);
    return n;
  };
  if (!chat) {
    if (body.contains("logprobs") && body["logprobs"].is_boolean()) {  // chat's spelling, sent to completions
      if (body["logprobs"].get<bool>()) bad("logprobs", range + " (or null)");
      return -1;
    }
    return static_cast<int>(count("logprobs").value_or(-1));
  }
  const bool wanted = bool_field(body, "logprobs");
  const auto n = count("top_logprobs");
  if (n && !wanted) bad("top_logprobs", "needs 'logprobs': true");
  return wanted ? static_cast<int>(n.value_or(0)) : -1;
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}, {"total_tokens", prompt_tokens + completion_tokens}};
}

json envelope(const CompletionRequest& r, const std::string& id, int64_t created, bool chunk) {
  const char* object = r.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", id}, {"object", object}, {"created", created}, {"model", r.model}, {"system_fingerprint", "dsv2"}};
}

}  // namespace

json parse_json_object(const std::string& text) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::exception& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return body;
}

CompletionRequest parse_completion_request(const std::string& body_text, bool chat) {
  json body = parse_json_object(body_text);  // not const: operator[] on a const json must not miss a key
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
    r.prompts = prompts_field(body["prompt"]);
    r.echo = bool_field(body, "echo");
  }
  r.top_logprobs = top_logprobs_field(body, chat);
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    const auto n = integer_field(body, name);
    // With echo, 0 scores the prompt and generates nothing (OpenAI's legacy completions).
    if (n && *n < (r.echo ? 0 : 1))
      bad(name, r.echo ? "must not be negative" : "must be at least 1 (0 only with echo)");
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
  r.stream = bool_field(body, "stream");
  if (r.stream && r.prompts.size() > 1) bad("prompt", "several prompts cannot be streamed: send one per request");
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

std::string token_text(const std::string& bytes) {
  std::string out;
  for (size_t pos = 0; pos < bytes.size();) {
    const size_t start = pos;
    const char32_t c = unicode::next_code_point(bytes, pos);
    if (c != 0xFFFD || bytes.compare(start, pos - start, "\xEF\xBF\xBD") == 0) {
      out.append(bytes, start, pos - start);
      continue;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    for (size_t i = start; i < pos; ++i) {
      const auto b = static_cast<unsigned char>(bytes[i]);
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

namespace {

json bytes_json(const std::string& bytes) {
  json out = json::array();
  for (char b : bytes) out.push_back(static_cast<unsigned char>(b));
  return out;
}

// Chat: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}], "refusal": null}.
json chat_logprobs_json(const std::vector<LogprobEntry>& entries) {
  json content = json::array();
  for (const LogprobEntry& e : entries) {
    json top = json::array();
    for (const auto& [bytes, logprob] : e.top)
      top.push_back({{"token", token_text(bytes)}, {"logprob", logprob}, {"bytes", bytes_json(bytes)}});
    content.push_back({{"token", token_text(e.bytes)},
                       {"logprob", e.logprob.value_or(0.0)},
                       {"bytes", bytes_json(e.bytes)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

// Legacy completions: parallel lists; top_logprobs maps token text to logprob
// and, as OpenAI's, also holds the chosen token (up to N + 1 entries). The
// first prompt token of an echo has null for both.
json completion_logprobs_json(const std::vector<LogprobEntry>& entries) {
  json tokens = json::array(), logprobs = json::array(), top = json::array(), offsets = json::array();
  for (const LogprobEntry& e : entries) {
    tokens.push_back(token_text(e.bytes));
    offsets.push_back(e.text_offset);
    if (!e.logprob) {
      logprobs.push_back(nullptr);
      top.push_back(nullptr);
      continue;
    }
    logprobs.push_back(*e.logprob);
    json alternatives = json::object();
    for (const auto& [bytes, logprob] : e.top) alternatives[token_text(bytes)] = logprob;
    alternatives[token_text(e.bytes)] = *e.logprob;
    top.push_back(alternatives);
  }
  return {{"tokens", tokens}, {"token_logprobs", logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

json logprobs_json(const CompletionRequest& r, const std::vector<LogprobEntry>& entries) {
  if (r.top_logprobs < 0) return nullptr;
  return r.chat ? chat_logprobs_json(entries) : completion_logprobs_json(entries);
}

}  // namespace

std::string completion_response(const CompletionRequest& r, const std::string& id, int64_t created,
                                const std::vector<CompletionResult>& results) {
  json out = envelope(r, id, created, false);
  out["choices"] = json::array();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const CompletionResult& result = results[i];
    json choice = {{"index", i},
                   {"logprobs", logprobs_json(r, result.logprobs)},
                   {"finish_reason", result.finish_reason}};
    if (r.chat)
      choice["message"] = {{"role", "assistant"}, {"content", result.text}};
    else
      choice["text"] = result.text;
    out["choices"].push_back(choice);
    prompt_tokens += result.prompt_tokens;
    completion_tokens += result.completion_tokens;
  }
  out["usage"] = usage_json(prompt_tokens, completion_tokens);
  return wire_text(out);
}

std::string completion_chunk(const CompletionRequest& r, const std::string& id, int64_t created, const std::string& text,
                             const std::string& finish_reason, bool first, const std::vector<LogprobEntry>& logprobs) {
  json out = envelope(r, id, created, true);
  json choice = {{"index", 0}, {"logprobs", logprobs_json(r, logprobs)},
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
