#include "runtime/chat_format.h"

#include "core/error.h"

namespace dsv2 {

std::string render_deepseek_chat(const std::vector<ChatMessage>& messages, const std::string& bos, const std::string& eos,
                                 bool add_generation_prompt) {
  std::string out = bos;
  for (const auto& m : messages) {
    if (m.role == "user")
      out += "User: " + m.content + "\n\n";
    else if (m.role == "assistant")
      out += "Assistant: " + m.content + eos;
    else if (m.role == "system")
      out += m.content + "\n\n";
    else
      throw Error("chat: unknown role '" + m.role + "' (expected system, user or assistant)");
  }
  if (add_generation_prompt) out += "Assistant:";
  return out;
}

}  // namespace dsv2
