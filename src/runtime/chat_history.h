// Keeping a conversation within a context window: when it no longer fits, its
// oldest turns go first, whole (a user message with the replies that follow
// it), so the model never sees a turn cut in the middle. A leading system
// message and the newest message always stay.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "runtime/chat_format.h"

namespace dsv2 {

// Drops turns from the front of `messages` until `fits(messages)` or nothing
// droppable is left; returns how many messages went. The caller checks fits()
// again: the newest message alone may still be too long.
size_t drop_oldest_turns(std::vector<ChatMessage>& messages,
                         const std::function<bool(const std::vector<ChatMessage>&)>& fits);

}  // namespace dsv2
