// The engine's log-probabilities (token ids) as a response reports them: each
// token's bytes, its alternatives' bytes, and where it starts in the choice's
// text, counted in characters (Unicode code points, as Python indexes the
// string a client receives).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/logprobs.h"
#include "server/openai_api.h"

namespace dsv2 {

class Tokenizer;

class LogprobEntries {
 public:
  explicit LogprobEntries(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  // The entry of `token`; `logprob` null for the first prompt token. A token
  // `in_text` moves the offset on by its characters; one that is not (the BOS
  // the server added to a text prompt, the EOS that ended a generation) starts
  // where the next one will.
  LogprobEntry next(int32_t token, const TokenLogprob* logprob, bool in_text);

 private:
  const Tokenizer& tokenizer_;
  int64_t chars_ = 0;  // characters of the text so far (UTF-8 lead bytes)
};

}  // namespace dsv2
