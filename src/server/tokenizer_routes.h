// vLLM's tokenizer routes, which lm-evaluation-harness's remote tokenizer
// (tokenizer_backend=remote, detected on its own) uses to count a context's
// tokens exactly as this server does:
//   POST /tokenize    {"prompt": TEXT, "add_special_tokens": true} -> {"tokens": [...], "count", "max_model_len"}
//   POST /detokenize  {"tokens": [...]} -> {"prompt": TEXT}
//   GET  /tokenizer_info -> {"bos_token", "eos_token", "pad_token", "chat_template", "model_max_length", ...}
// Special-token text in a prompt is read as the special token, as the Hugging
// Face tokenizer (and so vLLM) reads it.
#pragma once

#include <cstdint>
#include <functional>

namespace httplib {
class Server;
}

namespace dsv2 {

class Tokenizer;

// Adds the routes; `context` is the server's tokens per sequence. A bad body
// is a 400 in OpenAI's error JSON, counted by `on_client_error`.
void add_tokenizer_routes(httplib::Server& http, const Tokenizer& tokenizer, int64_t context,
                          std::function<void()> on_client_error);

}  // namespace dsv2
