#include "server/tokenizer_routes.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "server/openai_api.h"
#include "tokenizer/tokenizer.h"

namespace dsv2 {

namespace {

using nlohmann::json;

// A special token's text, or null when the tokenizer has none.
json token_or_null(const Tokenizer& tokenizer, int32_t id) {
  if (id < 0) return nullptr;
  const std::string text = tokenizer.id_to_token(id);
  return text.empty() ? json(nullptr) : json(text);
}

}  // namespace

void add_tokenizer_routes(httplib::Server& http, const Tokenizer& tokenizer, int64_t context,
                          std::function<void()> on_client_error) {
  // Runs a route's body; an ApiError becomes its JSON answer.
  auto guarded = [on_client_error](auto handle) {
    return [handle, on_client_error](const httplib::Request& req, httplib::Response& res) {
      try {
        handle(parse_json_object(req.body), res);
      } catch (const ApiError& e) {
        on_client_error();
        res.status = e.status;
        res.set_content(e.json(), "application/json");
      }
    };
  };
  http.Post("/tokenize", guarded([&tokenizer, context](const json& body, httplib::Response& res) {
    if (!body.contains("prompt") || !body["prompt"].is_string())
      throw ApiError(400, "'prompt': must be a string (this server tokenizes text, not messages)", "prompt");
    bool special = true;
    if (body.contains("add_special_tokens") && !body["add_special_tokens"].is_null()) {
      if (!body["add_special_tokens"].is_boolean())
        throw ApiError(400, "'add_special_tokens': must be a boolean", "add_special_tokens");
      special = body["add_special_tokens"].get<bool>();
    }
    const std::vector<int32_t> ids = tokenizer.encode(body["prompt"].get<std::string>(), {special, true});
    const json out = {{"count", ids.size()}, {"max_model_len", context}, {"tokens", ids}, {"token_strs", nullptr}};
    res.set_content(out.dump(), "application/json");
  }));
  http.Post("/detokenize", guarded([&tokenizer](const json& body, httplib::Response& res) {
    const char* shape = "'tokens': must be an array of token ids";
    if (!body.contains("tokens") || !body["tokens"].is_array()) throw ApiError(400, shape, "tokens");
    std::vector<int32_t> ids;
    for (const json& x : body["tokens"]) {
      if (!x.is_number_unsigned() || x.get<uint64_t>() >= static_cast<uint64_t>(tokenizer.vocab_size()))
        throw ApiError(400, std::string(shape) + " of the vocabulary (" + x.dump() + " is not one)", "tokens");
      ids.push_back(static_cast<int32_t>(x.get<uint64_t>()));
    }
    std::string text;
    try {
      text = tokenizer.decode(ids);
    } catch (const Error& e) {  // an id inside the range that the vocabulary skips
      throw ApiError(400, std::string("'tokens': ") + e.what(), "tokens");
    }
    res.set_content(json{{"prompt", text}}.dump(), "application/json");
  }));
  http.Get("/tokenizer_info", [&tokenizer, context](const httplib::Request&, httplib::Response& res) {
    const std::string& chat_template = tokenizer.chat_template();
    const json out = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                      {"bos_token", token_or_null(tokenizer, tokenizer.bos_id())},
                      {"eos_token", token_or_null(tokenizer, tokenizer.eos_id())},
                      {"pad_token", token_or_null(tokenizer, tokenizer.pad_id())},
                      {"chat_template", chat_template.empty() ? json(nullptr) : json(chat_template)},
                      {"model_max_length", context}};
    res.set_content(out.dump(), "application/json");
  });
}

}  // namespace dsv2
