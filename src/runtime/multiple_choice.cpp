#include "runtime/multiple_choice.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/model.h"
#include "runtime/logprobs.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace dsv2 {

namespace {

using nlohmann::json;

ChoiceItem parse_item(const std::string& line, const std::string& where) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    throw Error(where + ": not valid JSON (" + e.what() + ")");
  }
  const std::string shape = R"( (a line is {"context": "...", "choices": ["...", ...], "answer": INDEX}))";
  if (!j.is_object()) throw Error(where + ": not a JSON object" + shape);
  ChoiceItem item;
  if (!j.contains("context") || !j["context"].is_string()) throw Error(where + ": 'context' must be a string" + shape);
  item.context = j["context"].get<std::string>();
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].size() < 2)
    throw Error(where + ": 'choices' must be an array of at least two strings" + shape);
  for (const json& c : j["choices"]) {
    if (!c.is_string() || c.get<std::string>().empty())
      throw Error(where + ": every choice must be a non-empty string");
    item.choices.push_back(c.get<std::string>());
  }
  const auto n = static_cast<int64_t>(item.choices.size());
  const bool index = j.contains("answer") && j["answer"].is_number_integer();
  if (!index || j["answer"].get<int64_t>() < 0 || j["answer"].get<int64_t>() >= n)
    throw Error(where + ": 'answer' must be the index of the right choice, 0 to " + std::to_string(n - 1));
  item.answer = j["answer"].get<int64_t>();
  return item;
}

// Characters (code points) of UTF-8 text: what Python's len() counts.
int64_t characters(const std::string& text) {
  int64_t n = 0;
  for (char b : text) n += (static_cast<unsigned char>(b) & 0xC0) != 0x80;
  return n;
}

// Where trailing whitespace begins, as Python's str.rstrip() finds it
// (Unicode White_Space, and the separators U+001C..U+001F Python adds).
size_t trailing_space(const std::string& text) {
  size_t end = text.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    const char32_t c = unicode::next_code_point(text, pos);
    if (pos != end || !(unicode::is_whitespace(c) || (c >= 0x1C && c <= 0x1F))) break;
    end = start;
  }
  return end;
}

}  // namespace

std::vector<ChoiceItem> load_choice_task(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the task file");
  std::vector<ChoiceItem> items;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    items.push_back(parse_item(line, path + ":" + std::to_string(number)));
  }
  if (items.empty()) throw Error(path + ": no items (one JSON object per line)");
  return items;
}

EncodedPair encode_pair(const Tokenizer& tokenizer, const std::string& context, const std::string& continuation) {
  const EncodeOptions plain{false, true};
  if (context.empty()) {
    const int32_t bos = tokenizer.bos_id() >= 0 ? tokenizer.bos_id() : tokenizer.eos_id();
    require(bos >= 0, "an empty context needs a BOS or EOS token to stand for it, and the tokenizer has neither");
    return {{bos}, tokenizer.encode(continuation, plain)};
  }
  // Trailing whitespace would end the context's last token early; as the
  // harness does, it moves over to the continuation.
  const size_t end = trailing_space(context);
  const std::string head = context.substr(0, end);
  std::vector<int32_t> whole = tokenizer.encode(head + context.substr(end) + continuation, plain);
  EncodedPair pair;
  pair.context = tokenizer.encode(head, plain);
  const size_t split = std::min(pair.context.size(), whole.size());
  pair.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(split), whole.end());
  return pair;
}

ItemScore score_item(Model& model, const Tokenizer& tokenizer, const ChoiceItem& item, CacheType cache_type) {
  ItemScore score;
  double best = -INFINITY, best_norm = -INFINITY;
  for (size_t c = 0; c < item.choices.size(); ++c) {
    const EncodedPair pair = encode_pair(tokenizer, item.context, item.choices[c]);
    std::vector<int32_t> ids = pair.context;
    ids.insert(ids.end(), pair.continuation.begin(), pair.continuation.end());
    const std::vector<double> logprobs = sequence_logprobs(model, ids, cache_type);
    // logprobs[i] scores ids[i + 1]: the continuation's are the last ones, summed in order as the harness sums them.
    double sum = 0.0;
    for (size_t i = pair.context.size(); i < ids.size(); ++i) sum += logprobs[i - 1];
    score.loglikelihoods.push_back(sum);
    const double norm = sum / static_cast<double>(characters(item.choices[c]));
    if (sum > best) best = sum, score.pred = static_cast<int64_t>(c);
    if (norm > best_norm) best_norm = norm, score.pred_norm = static_cast<int64_t>(c);
  }
  return score;
}

Accuracy accuracy(int64_t correct, int64_t n) {
  Accuracy a;
  if (n == 0) return a;
  const double p = static_cast<double>(correct) / static_cast<double>(n), count = static_cast<double>(n);
  a.value = p;
  a.stderr_ = n > 1 ? std::sqrt(p * (1.0 - p) / (count - 1.0)) : 0.0;
  const double z = 1.959963984540054, z2 = z * z;
  const double center = (p + z2 / (2.0 * count)) / (1.0 + z2 / count);
  const double half = z * std::sqrt(p * (1.0 - p) / count + z2 / (4.0 * count * count)) / (1.0 + z2 / count);
  a.low = std::max(0.0, center - half);
  a.high = std::min(1.0, center + half);
  return a;
}

}  // namespace dsv2
