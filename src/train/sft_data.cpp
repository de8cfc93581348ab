#include "train/sft_data.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/jsonl.h"
#include "tokenizer/tokenizer.h"

namespace dsv2 {

namespace {

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.size() >= prefix.size() && text.compare(0, prefix.size(), prefix) == 0;
}

// The messages of one JSONL line; throws Error (without the position, which the caller adds).
std::vector<ChatMessage> parse_conversation(const std::string& line) {
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw Error("not valid JSON");
  if (!j.is_object()) throw Error("not a JSON object (expected {\"messages\": [...]})");
  return parse_chat_messages(j);
}

}  // namespace

std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& j) {
  if (!j.contains("messages") || !j["messages"].is_array()) throw Error("no \"messages\" list");
  return parse_message_list(j["messages"]);
}

namespace {

void append(SftExample& e, const std::vector<int32_t>& tokens, bool trained) {
  e.tokens.insert(e.tokens.end(), tokens.begin(), tokens.end());
  e.trained.insert(e.trained.end(), tokens.size(), trained ? 1 : 0);
}

uint64_t fnv(uint64_t h, int64_t v) { return (h ^ static_cast<uint64_t>(v)) * 1099511628211ull; }

}  // namespace

std::vector<ChatMessage> parse_message_list(const nlohmann::json& list) {
  std::vector<ChatMessage> messages;
  for (const auto& m : list) {
    const std::string which = "message " + std::to_string(messages.size() + 1);
    if (!m.is_object()) throw Error(which + " is not an object");
    if (!m.contains("role") || !m["role"].is_string()) throw Error(which + " has no string \"role\"");
    if (!m.contains("content") || !m["content"].is_string())
      throw Error(which + " has no string \"content\" (lists of content parts are not supported)");
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return messages;
}

SftExample tokenize_conversation(const std::vector<ChatMessage>& messages, const Tokenizer& tokenizer,
                                 const ChatRenderer& render) {
  const std::string whole = render(messages, false);
  // Cut points in `whole`: [prompt end, answer end) for each assistant turn.
  std::vector<std::pair<size_t, size_t>> answers;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "assistant") continue;
    const std::vector<ChatMessage> before(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i));
    const std::vector<ChatMessage> through(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    const std::string prompt = render(before, true), turn = render(through, false);
    if (!starts_with(turn, prompt) || !starts_with(whole, turn) ||
        (!answers.empty() && prompt.size() < answers.back().second))
      throw Error("the chat template does not render this conversation incrementally (assistant message " +
                  std::to_string(i + 1) + "): its assistant tokens cannot be told apart");
    answers.emplace_back(prompt.size(), turn.size());
  }
  if (answers.empty()) throw Error("no assistant message: nothing to train on");
  const EncodeOptions options{/*add_special_tokens=*/false, /*parse_special=*/true};
  SftExample e;
  size_t at = 0;
  for (const auto& [begin, end] : answers) {
    append(e, tokenizer.encode(std::string_view(whole).substr(at, begin - at), options), false);
    append(e, tokenizer.encode(std::string_view(whole).substr(begin, end - begin), options), true);
    at = end;
  }
  return e;
}

SftData load_sft_files(const std::vector<std::string>& files, const Tokenizer& tokenizer, const ChatRenderer& render,
                       int64_t seq_len) {
  SftData data;
  for_each_jsonl_line(files, [&](const std::string& line, int64_t) {
    SftExample e = tokenize_conversation(parse_conversation(line), tokenizer, render);
    size_t first = 0;
    while (first < e.trained.size() && !e.trained[first]) ++first;
    // The token at 0 is never a target (nothing before it predicts it), and an answer may render as nothing.
    if (std::count(e.trained.begin() + (e.trained.empty() ? 0 : 1), e.trained.end(), 1) == 0)
      throw Error("the assistant messages render as no token that follows the prompt: nothing to train on");
    if (static_cast<int64_t>(first) >= seq_len)
      throw Error("the prompt before the first assistant answer is " + std::to_string(first) +
                  " tokens, longer than the context (--seq-len " + std::to_string(seq_len) + ")");
    if (static_cast<int64_t>(e.tokens.size()) > seq_len) {
      e.tokens.resize(seq_len);
      e.trained.resize(seq_len);
      ++data.truncated;
    }
    data.examples.push_back(std::move(e));
  });
  if (data.examples.empty()) throw Error(files.front() + (files.size() > 1 ? " and the other files" : "") + ": no conversations");
  return data;
}

SftBatches::SftBatches(const std::vector<SftExample>& examples, int64_t seq_len, int64_t epochs, uint64_t seed,
                       int32_t pad_id)
    : seq_len_(seq_len) {
  require(seq_len >= 2 && epochs >= 1 && pad_id >= 0, "SFT batches: need seq_len >= 2, epochs >= 1 and a pad token");
  int64_t used = 0;  // tokens in the current row
  auto pad_row = [&] {
    // Padding is a document of its own (positions from 0) whose targets are all ignored.
    for (int64_t p = 0; used < seq_len_; ++used, ++p) {
      inputs_.push_back(pad_id);
      targets_.push_back(-1);
      positions_.push_back(static_cast<int32_t>(p));
      ++padding_;
    }
    used = 0;
    ++rows_;
  };
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    for (size_t index : epoch_order(examples.size(), seed, epoch)) {
      const SftExample& e = examples[index];
      const int64_t n = static_cast<int64_t>(e.tokens.size());
      require(n >= 1 && n <= seq_len_, "SFT batches: a conversation longer than seq_len");
      if (used + n > seq_len_) pad_row();
      for (int64_t t = 0; t < n; ++t) {
        inputs_.push_back(e.tokens[t]);
        // A token predicts the next one of its own conversation; the last predicts nothing.
        targets_.push_back(t + 1 < n && e.trained[t + 1] ? e.tokens[t + 1] : -1);
        positions_.push_back(static_cast<int32_t>(t));
      }
      used += n;
    }
  }
  if (used > 0) pad_row();
  uint64_t h = 1469598103934665603ull;
  h = fnv(fnv(h, seq_len_), rows_);
  for (size_t i = 0; i < inputs_.size(); ++i) h = fnv(fnv(fnv(h, inputs_[i]), targets_[i]), positions_[i]);
  fingerprint_ = h;
}

int64_t SftBatches::trained_tokens() const {
  int64_t n = 0;
  for (int32_t t : targets_) n += t >= 0;
  return n;
}

double SftBatches::padding_share() const { return rows_ ? static_cast<double>(padding_) / (rows_ * seq_len_) : 0.0; }

Batch SftBatches::next(int64_t sequences, int64_t seq_len) {
  require(seq_len == seq_len_, "SFT batches: asked for sequences of another length");
  require(cursor_ < rows_, "SFT batches: the run has no more rows");
  const int64_t first = cursor_, end = std::min(rows_, cursor_ + sequences);
  Batch b;
  b.batch = end - first;
  b.seq_len = seq_len_;
  b.inputs.assign(inputs_.begin() + first * seq_len_, inputs_.begin() + end * seq_len_);
  b.targets.assign(targets_.begin() + first * seq_len_, targets_.begin() + end * seq_len_);
  b.positions.assign(positions_.begin() + first * seq_len_, positions_.begin() + end * seq_len_);
  b.droppable.assign(b.batch, 0);  // no token dropping in fine-tuning
  cursor_ = end;
  return b;
}

std::string SftBatches::state() const { return plan_state("sft", cursor_, fingerprint_); }

void SftBatches::set_state(const std::string& state) {
  cursor_ = plan_cursor(state, "sft", rows_, fingerprint_, "dsv2 sft",
                        "SFT data or options (--data, --epochs, --seq-len, --seed)");
}

}  // namespace dsv2
