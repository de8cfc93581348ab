#include "runtime/chat_history.h"

namespace dsv2 {

size_t drop_oldest_turns(std::vector<ChatMessage>& messages,
                         const std::function<bool(const std::vector<ChatMessage>&)>& fits) {
  const size_t first = !messages.empty() && messages[0].role == "system" ? 1 : 0;
  size_t dropped = 0;
  while (messages.size() > first + 1 && !fits(messages)) {
    // The oldest turn: its first message and what follows up to the next user message.
    size_t end = first + 1;
    while (end + 1 < messages.size() && messages[end].role != "user") ++end;
    const auto begin = messages.begin();
    messages.erase(begin + static_cast<std::ptrdiff_t>(first), begin + static_cast<std::ptrdiff_t>(end));
    dropped += end - first;
  }
  return dropped;
}

}  // namespace dsv2
