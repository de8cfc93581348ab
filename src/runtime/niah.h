// Needle in a haystack (DeepSeek-V2 §3.1.4, Figure 4): a sentence with a
// random number ("The secret number is 58213.", or 秘密数字是58213。) is placed
// at a depth of a long stretch of real text the model never trained on, and
// the model, prompted with the start of that sentence at the end, must
// complete the number. One accuracy per (context length, depth) cell.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/latent_cache.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace dsv2 {

struct NiahOptions {
  std::vector<int64_t> lengths;  // prompt tokens (haystack, needle and question)
  std::vector<int> depths;       // percent of the haystack before the needle
  int trials = 1;                // needles (numbers, haystack offsets) per cell
  uint64_t seed = 1;
  std::string language = "en";   // "en" or "zh": the needle's language (match the haystack)
  CacheType cache_type = CacheType::kF32;
};

struct NiahCell {
  int64_t length = 0;
  int depth = 0;
  int trials = 0, correct = 0;
  int64_t prompt_tokens = 0;  // of the last trial (re-tokenized around the needle: within a few tokens of length)
  // The trials answered wrongly: the needle's number and what the model wrote.
  std::vector<std::pair<std::string, std::string>> misses;
  double accuracy() const { return trials ? static_cast<double>(correct) / trials : 0.0; }
};

// `haystack`: the text to hide the needle in (long enough for the largest
// length). on_cell reports each cell when done (for progress).
std::vector<NiahCell> run_niah(Model& model, const Tokenizer& tokenizer, const std::string& haystack,
                               const NiahOptions& options, const std::function<void(const NiahCell&)>& on_cell = {});

}  // namespace dsv2
