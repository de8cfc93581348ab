// Conversations as prompt text in DeepSeek-V2-Chat's format (what the chat
// template of dsv2-trained tokenizers renders):
//   <bos>[system\n\n]User: {u1}\n\nAssistant: {a1}<eos>User: {u2}\n\nAssistant:
// Models whose tokenizer_config.json carries a different template get it
// rendered by the Jinja engine of the serving issue; until then this format is used.
#pragma once

#include <string>
#include <vector>

namespace dsv2 {

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

std::string render_deepseek_chat(const std::vector<ChatMessage>& messages, const std::string& bos_token,
                                 const std::string& eos_token, bool add_generation_prompt);

}  // namespace dsv2
