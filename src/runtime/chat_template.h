// Chat templates: the Jinja2 templates Hugging Face models ship in
// tokenizer_config.json ("chat_template"), rendered as transformers renders
// them (trim_blocks and lstrip_blocks on). Implemented: the subset real
// DeepSeek templates use (V2-Chat, V2.5, V3, R1) and most other chat templates:
// {{ }}, {% if/elif/else %}, {% for %} (loop.index0/first/last/length), {% set %}
// including namespace attributes, whitespace control (-), comments, the usual
// operators, tests (defined, none, string, ...), filters (trim, length,
// tojson, ...), string methods (split, strip, startswith, ...) and
// raise_exception(). Checked against Python's jinja2 by tests/chat_template_test.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/chat_format.h"

namespace dsv2 {

class ChatTemplate {
 public:
  // Parses the template; throws Error naming the problem and its position.
  explicit ChatTemplate(const std::string& source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;

  // Renders with `variables` (messages, add_generation_prompt, bos_token, ...).
  // Throws Error for a runtime failure (raise_exception, bad operands).
  std::string render(const nlohmann::ordered_json& variables) const;

  // The usual call: messages as {role, content} objects plus the special tokens.
  std::string render_chat(const std::vector<ChatMessage>& messages, const std::string& bos_token,
                          const std::string& eos_token, bool add_generation_prompt) const;

  struct Node;  // the parsed template (defined in chat_template.cpp)

 private:
  std::vector<std::unique_ptr<Node>> nodes_;
};

class Tokenizer;

// Renders a conversation in the model's chat format: the chat_template of its
// tokenizer_config.json, or DeepSeek-V2-Chat's format when it has none. The
// template is parsed here, so a broken one fails at load time.
using ChatRenderer = std::function<std::string(const std::vector<ChatMessage>&, bool add_generation_prompt)>;
ChatRenderer make_chat_renderer(const Tokenizer& tokenizer, const std::string& where);

}  // namespace dsv2
