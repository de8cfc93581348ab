// Multiple-choice evaluation as lm-evaluation-harness computes it
// (`dsv2 eval --task FILE.jsonl`): each choice is scored by the log-likelihood
// of its tokens after the context; `acc` takes the choice with the largest
// sum, `acc_norm` the largest sum divided by the choice's length in
// characters. The harness's local-completions model against `dsv2 serve`
// computes the same numbers for the same items (tests/server/test_lm_eval.py).
//
// A task file is JSON Lines, one item per line:
//   {"context": "The passage", "choices": [" one", " two", ...], "answer": 1}
// context + choices[answer] is the text as it truly continues: a choice carries
// its own leading space (the harness's target_delimiter is ""). Other fields are
// ignored; blank lines are skipped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/latent_cache.h"

namespace dsv2 {

class Model;
class Tokenizer;

struct ChoiceItem {
  std::string context;
  std::vector<std::string> choices;
  int64_t answer = 0;
};

// Throws Error naming the file and line of a line that is not such an item.
std::vector<ChoiceItem> load_choice_task(const std::string& path);

// The harness's tokens for (context, continuation): trailing whitespace of the
// context moves to the continuation; the continuation's tokens are those of the
// whole text after the context's. An empty context is the BOS token. Special-
// token text is read as the special token (as the Hugging Face tokenizer and
// the server's /tokenize read it); no BOS is added.
struct EncodedPair {
  std::vector<int32_t> context, continuation;
};
EncodedPair encode_pair(const Tokenizer& tokenizer, const std::string& context, const std::string& continuation);

struct ItemScore {
  std::vector<double> loglikelihoods;  // one per choice
  int64_t pred = 0, pred_norm = 0;     // argmax of the sums, of the sums per character (first on ties)
};
// Runs context + choice from an empty cache for each choice (in the server
// engine's prefill chunks, so the numbers equal those of its echo).
ItemScore score_item(Model& model, const Tokenizer& tokenizer, const ChoiceItem& item, CacheType cache_type);

// A share of n items with its standard error as the harness reports it
// (sample standard deviation / sqrt(n)) and the 95% Wilson score interval.
struct Accuracy {
  double value = 0.0, stderr_ = 0.0, low = 0.0, high = 0.0;
};
Accuracy accuracy(int64_t correct, int64_t n);

}  // namespace dsv2
