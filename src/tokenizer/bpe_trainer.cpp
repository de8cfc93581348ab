#include "tokenizer/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <map>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_set>

#include "core/error.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode.h"

namespace dsv2 {

namespace {

using Pair = std::pair<uint32_t, uint32_t>;

struct PairHash {
  size_t operator()(const Pair& p) const { return std::hash<uint64_t>()((uint64_t(p.first) << 32) | p.second); }
};

// One heap entry: a pair, its count when pushed, and the words it was seen in.
struct Merge {
  Pair pair;
  uint64_t count;
  std::vector<uint32_t> words;
};
// Highest count first; on equal counts the smaller pair first (HF's Ord for Merge).
struct MergeOrder {
  bool operator()(const Merge& a, const Merge& b) const {
    if (a.count != b.count) return a.count < b.count;
    return a.pair > b.pair;
  }
};

// Replaces every (a, b) in `word` by `merged`, left to right, and reports how the
// counts of neighbouring pairs change: exactly HF's Word::merge.
void merge_word(std::vector<uint32_t>& word, uint32_t a, uint32_t b, uint32_t merged,
                std::vector<std::pair<Pair, int>>& changes) {
  for (size_t i = 0; i < word.size(); ++i) {
    if (word[i] != a || i + 1 >= word.size() || word[i + 1] != b) continue;
    if (i > 0) {
      changes.push_back({{word[i - 1], a}, -1});
      changes.push_back({{word[i - 1], merged}, 1});
    }
    word[i] = merged;
    word.erase(word.begin() + static_cast<ptrdiff_t>(i) + 1);
    if (i + 1 < word.size()) {
      changes.push_back({{b, word[i + 1]}, -1});
      changes.push_back({{merged, word[i + 1]}, 1});
    }
  }
}

}  // namespace

void count_words(const std::string& text, const PreTokenizer& pre_tokenizer, std::unordered_map<std::string, uint64_t>& counts) {
  std::vector<std::string> words;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    end = end == std::string::npos ? text.size() : end + 1;
    words.assign(1, unicode::to_valid_utf8(std::string_view(text).substr(begin, end - begin)));
    pre_tokenizer.split(words);
    for (auto& w : words)
      if (!w.empty()) ++counts[w];
    begin = end;
  }
}

TrainedBpe train_bpe(const std::unordered_map<std::string, uint64_t>& word_counts, const BpeTrainerOptions& options,
                     const std::function<void(int64_t, int64_t)>& progress) {
  TrainedBpe out;
  std::unordered_map<std::string, uint32_t> token_ids;
  auto add_token = [&](const std::string& token) {
    auto [it, inserted] = token_ids.emplace(token, static_cast<uint32_t>(out.tokens.size()));
    if (inserted) out.tokens.push_back(token);
    return it->second;
  };
  for (const auto& s : options.special_tokens) add_token(s);
  // The whole byte alphabet, in code-point order of the symbols.
  std::vector<std::pair<char32_t, int>> alphabet;
  for (int b = 0; b < 256; ++b) {
    size_t pos = 0;
    alphabet.push_back({unicode::next_code_point(unicode::byte_to_symbol()[b], pos), b});
  }
  std::sort(alphabet.begin(), alphabet.end());
  std::array<uint32_t, 256> byte_id{};
  for (const auto& [symbol, b] : alphabet) byte_id[b] = add_token(unicode::byte_to_symbol()[b]);

  // Words as symbol ids, with their counts; sorted so that the result never
  // depends on hash-map order.
  std::vector<std::pair<std::string, uint64_t>> sorted(word_counts.begin(), word_counts.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::vector<uint32_t>> words(sorted.size());
  std::vector<uint64_t> counts(sorted.size());
  for (size_t i = 0; i < sorted.size(); ++i) {
    counts[i] = sorted[i].second;
    for (unsigned char c : sorted[i].first) words[i].push_back(byte_id[c]);
  }

  std::unordered_map<Pair, int64_t, PairHash> pair_counts;
  std::unordered_map<Pair, std::vector<uint32_t>, PairHash> where;
  for (uint32_t i = 0; i < words.size(); ++i)
    for (size_t j = 0; j + 1 < words[i].size(); ++j) {
      const Pair p{words[i][j], words[i][j + 1]};
      pair_counts[p] += static_cast<int64_t>(counts[i]);
      auto& list = where[p];
      if (list.empty() || list.back() != i) list.push_back(i);
    }
  std::priority_queue<Merge, std::vector<Merge>, MergeOrder> queue;
  for (auto& [pair, list] : where)
    if (pair_counts[pair] > 0) queue.push({pair, static_cast<uint64_t>(pair_counts[pair]), std::move(list)});
  where.clear();

  const int64_t target = options.vocab_size;
  std::vector<std::pair<Pair, int>> changes;
  while (static_cast<int64_t>(out.tokens.size()) < target && !queue.empty()) {
    Merge top = queue.top();
    queue.pop();
    const int64_t current = pair_counts[top.pair];
    if (static_cast<int64_t>(top.count) != current) {  // stale: requeue with today's count
      top.count = static_cast<uint64_t>(current);
      queue.push(std::move(top));
      continue;
    }
    if (top.count < 1 || options.min_frequency > top.count) break;

    const std::string merged_text = out.tokens[top.pair.first] + out.tokens[top.pair.second];
    const uint32_t merged = add_token(merged_text);
    out.merges.push_back({out.tokens[top.pair.first], out.tokens[top.pair.second]});

    std::map<Pair, std::vector<uint32_t>> new_pairs;  // ordered: deterministic heap pushes
    for (uint32_t w : top.words) {
      changes.clear();
      merge_word(words[w], top.pair.first, top.pair.second, merged, changes);
      for (const auto& [pair, change] : changes) {
        pair_counts[pair] += change * static_cast<int64_t>(counts[w]);
        if (change > 0) {
          auto& list = new_pairs[pair];
          if (list.empty() || list.back() != w) list.push_back(w);
        }
      }
    }
    for (auto& [pair, list] : new_pairs)
      if (pair_counts[pair] > 0) queue.push({pair, static_cast<uint64_t>(pair_counts[pair]), std::move(list)});
    if (progress && out.merges.size() % 200 == 0) progress(static_cast<int64_t>(out.tokens.size()), target);
  }
  if (progress) progress(static_cast<int64_t>(out.tokens.size()), target);
  return out;
}

const std::vector<std::string>& deepseek_special_tokens() {
  static const std::vector<std::string> tokens = {
      "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>",
      "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>"};
  return tokens;
}

nlohmann::json trained_tokenizer_json(const TrainedBpe& bpe, const nlohmann::json& pre_tokenizer,
                                      const std::vector<std::string>& special_tokens) {
  using nlohmann::ordered_json;
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (size_t i = 0; i < special_tokens.size(); ++i)
    added.push_back({{"id", i}, {"content", special_tokens[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t i = 0; i < bpe.tokens.size(); ++i) vocab[bpe.tokens[i]] = i;
  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  for (const auto& [a, b] : bpe.merges) merges.push_back({a, b});
  const std::string bos = special_tokens.at(0);
  nlohmann::ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = nlohmann::ordered_json::parse(pre_tokenizer.dump());
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{bos, {{"id", bos}, {"ids", {0}}, {"tokens", {bos}}}}}}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}};
  return nlohmann::json::parse(j.dump());
}

nlohmann::json trained_tokenizer_config_json(const std::vector<std::string>& special_tokens) {
  // DeepSeek-V2-Chat's conversation format.
  const char* chat_template =
      "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
      "{{ bos_token }}{% for message in messages %}"
      "{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n\\n' }}"
      "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}"
      "{% elif message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}"
      "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";
  return {{"add_bos_token", true},
          {"add_eos_token", false},
          {"bos_token", special_tokens.at(0)},
          {"eos_token", special_tokens.at(1)},
          {"pad_token", special_tokens.size() > 2 ? special_tokens[2] : special_tokens[1]},
          {"clean_up_tokenization_spaces", false},
          {"model_max_length", 16384},
          {"tokenizer_class", "PreTrainedTokenizerFast"},
          {"chat_template", chat_template}};
}

}  // namespace dsv2
