// GRPO's prompts (dsv2 grpo --prompts): one JSON object per line, either
//   {"prompt": "raw text, continued as is", ...}   or
//   {"messages": [{"role": "user", "content": "..."}], ...}  (rendered with the
// model's chat template and its generation prompt), plus any other fields
// (e.g. "answer"), which the rewards read. docs/ALIGNMENT.md.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/chat_template.h"

namespace dsv2 {

class Tokenizer;

struct RlPrompt {
  std::string where;             // FILE:LINE
  std::string text;              // the prompt as the model sees it (rendered for "messages")
  std::vector<int32_t> tokens;
  nlohmann::json fields;         // the line's object
};

// Every problem is an Error naming the file and line: not JSON, not an
// object, neither a string "prompt" nor a "messages" list, a malformed
// message, an empty prompt, a prompt whose tokens plus max_new_tokens exceed
// `context`, and (with a non-empty `required_field`) a line without that field.
std::vector<RlPrompt> load_rl_prompts(const std::string& file, const Tokenizer& tokenizer, const ChatRenderer& render,
                                      int64_t context, int64_t max_new_tokens, const std::string& required_field = "");

}  // namespace dsv2
