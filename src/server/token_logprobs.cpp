#include "server/token_logprobs.h"

#include "tokenizer/tokenizer.h"

namespace dsv2 {

namespace {
bool continuation_byte(char b) { return (static_cast<unsigned char>(b) & 0xC0) == 0x80; }
}  // namespace

LogprobEntry LogprobEntries::next(int32_t token, const TokenLogprob* logprob, bool in_text) {
  LogprobEntry e;
  e.bytes = tokenizer_.decode_bytes({token});
  // A token that starts inside a character (the rest of a split one) starts
  // where that character does.
  e.text_offset = chars_ - (in_text && !e.bytes.empty() && continuation_byte(e.bytes[0]) && chars_ > 0 ? 1 : 0);
  if (in_text)
    for (char b : e.bytes) chars_ += !continuation_byte(b);
  if (logprob) {
    e.logprob = logprob->logprob;
    for (const TopLogprob& t : logprob->top) e.top.emplace_back(tokenizer_.decode_bytes({t.token}), t.logprob);
  }
  return e;
}

}  // namespace dsv2
