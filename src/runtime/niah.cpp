#include "runtime/niah.h"

#include <algorithm>
#include <random>

#include "core/error.h"
#include "runtime/generator.h"

namespace dsv2 {

namespace {

struct Needle {
  std::string sentence, question;  // the sentence hidden in the text; the start of it asked at the end
  std::vector<std::string> boundaries;  // where a sentence ends, so the needle goes between sentences
};

Needle make_needle(const std::string& language, const std::string& number) {
  if (language == "zh") return {"秘密数字是" + number + "。", "秘密数字是", {"。", "\n"}};
  return {"The secret number is " + number + ". ", "The secret number is", {". ", "\n"}};
}

// The end of the first sentence at or after `at` (or the end of the text).
size_t next_boundary(const std::string& text, size_t at, const std::vector<std::string>& boundaries) {
  size_t best = text.size();
  for (const std::string& b : boundaries)
    if (const size_t p = text.find(b, at); p != std::string::npos) best = std::min(best, p + b.size());
  return best;
}

// The number the model wrote: its leading digits, after any spaces.
std::string leading_number(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && text[i] == ' ') ++i;
  size_t j = i;
  while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
  return text.substr(i, j - i);
}

}  // namespace

std::vector<NiahCell> run_niah(Model& model, const Tokenizer& tokenizer, const std::string& haystack, const NiahOptions& o,
                               const std::function<void(const NiahCell&)>& on_cell) {
  require(o.language == "en" || o.language == "zh", "niah: the needle's language is en or zh");
  require(o.trials >= 1, "niah: at least one trial per cell");
  const std::vector<int32_t> stream = tokenizer.encode(haystack, {false, false});
  const int64_t longest = o.lengths.empty() ? 0 : *std::max_element(o.lengths.begin(), o.lengths.end());
  // The needle and the question take a few dozen tokens; the haystack the rest.
  const Needle sample = make_needle(o.language, "00000");
  const int64_t overhead = static_cast<int64_t>(tokenizer.encode(sample.sentence + "\n" + sample.question, {true, false}).size());
  require(static_cast<int64_t>(stream.size()) >= longest, "niah: the haystack text has " + std::to_string(stream.size()) +
                                                              " tokens, fewer than the longest length " + std::to_string(longest));
  LatentCache cache(model.config(), longest + 16, 0, o.cache_type);
  GenerationOptions greedy;
  greedy.max_tokens = 8;  // a space and five digits, one token each in DeepSeek's pre-tokenizer
  greedy.sampling.temperature = 0.0f;
  greedy.ignore_stop = true;
  std::vector<NiahCell> cells;
  for (int64_t length : o.lengths) {
    require(length > overhead + 16, "niah: length " + std::to_string(length) + " leaves no room for a haystack");
    const int64_t hay_tokens = length - overhead;
    for (int depth : o.depths) {
      require(depth >= 0 && depth <= 100, "niah: depths are percentages, 0 to 100");
      NiahCell cell{length, depth, o.trials, 0, 0, {}};
      for (int trial = 0; trial < o.trials; ++trial) {
        std::mt19937_64 rng(o.seed * 1000003 + static_cast<uint64_t>(length) * 101 + depth * 7 + trial);
        const std::string number = std::to_string(10000 + rng() % 90000);
        const Needle needle = make_needle(o.language, number);
        // A different stretch of the haystack for each trial.
        const int64_t room = static_cast<int64_t>(stream.size()) - hay_tokens;
        const int64_t offset = room > 0 ? static_cast<int64_t>(rng() % static_cast<uint64_t>(room + 1)) : 0;
        std::string text = tokenizer.decode(std::vector<int32_t>(stream.begin() + offset, stream.begin() + offset + hay_tokens));
        const size_t at = depth == 100 ? text.size()
                                       : next_boundary(text, static_cast<size_t>(text.size() * (depth / 100.0)), needle.boundaries);
        text.insert(at, (at == text.size() ? "\n" : "") + needle.sentence);
        const std::vector<int32_t> prompt = tokenizer.encode(text + "\n" + needle.question, {true, false});
        cache.set_length(0);
        const std::vector<int32_t> answer = generate(model, cache, prompt, 0, greedy, [](int32_t) { return true; });
        const std::string written = tokenizer.decode(answer, true);
        if (leading_number(written) == number)
          ++cell.correct;
        else
          cell.misses.emplace_back(number, written);
        cell.prompt_tokens = static_cast<int64_t>(prompt.size());
      }
      cells.push_back(cell);
      if (on_cell) on_cell(cell);
    }
  }
  return cells;
}

}  // namespace dsv2
