#include "train/sft_data.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/error.h"
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
  std::vector<ChatMessage> messages;
  for (const auto& m : j["messages"]) {
    const std::string which = "message " + std::to_string(messages.size() + 1);
    if (!m.is_object()) throw Error(which + " is not an object");
    if (!m.contains("role") || !m["role"].is_string()) throw Error(which + " has no string \"role\"");
    if (!m.contains("content") || !m["content"].is_string())
      throw Error(which + " has no string \"content\" (lists of content parts are not supported)");
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return messages;
}

namespace {

void append(SftExample& e, const std::vector<int32_t>& tokens, bool trained) {
  e.tokens.insert(e.tokens.end(), tokens.begin(), tokens.end());
  e.trained.insert(e.trained.end(), tokens.size(), trained ? 1 : 0);
}

uint64_t fnv(uint64_t h, int64_t v) { return (h ^ static_cast<uint64_t>(v)) * 1099511628211ull; }

}  // namespace

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
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error(file + ": cannot open");
    std::string line;
    for (int64_t number = 1; std::getline(in, line); ++number) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = file + ":" + std::to_string(number) + ": ";
      SftExample e;
      try {
        e = tokenize_conversation(parse_conversation(line), tokenizer, render);
      } catch (const std::exception& error) {  // the template's own failures included
        throw Error(where + error.what());
      }
      size_t first = 0;
      while (first < e.trained.size() && !e.trained[first]) ++first;
      // The token at 0 is never a target (nothing before it predicts it), and an answer may render as nothing.
      if (std::count(e.trained.begin() + (e.trained.empty() ? 0 : 1), e.trained.end(), 1) == 0)
        throw Error(where + "the assistant messages render as no token that follows the prompt: nothing to train on");
      if (static_cast<int64_t>(first) >= seq_len)
        throw Error(where + "the prompt before the first assistant answer is " + std::to_string(first) +
                    " tokens, longer than the context (--seq-len " + std::to_string(seq_len) + ")");
      if (static_cast<int64_t>(e.tokens.size()) > seq_len) {
        e.tokens.resize(seq_len);
        e.trained.resize(seq_len);
        ++data.truncated;
      }
      data.examples.push_back(std::move(e));
    }
    if (in.bad()) throw Error(file + ": read error");
  }
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
  std::vector<size_t> order(examples.size());
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    // Fisher-Yates with the generator's raw output (std::shuffle's draws are the
    // library's own): the same order on every platform.
    std::mt19937_64 rng(seed * 1000003ull + static_cast<uint64_t>(epoch));
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
    for (size_t index : order) {
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

std::string SftBatches::state() const { return "sft " + std::to_string(cursor_) + " " + std::to_string(fingerprint_); }

void SftBatches::set_state(const std::string& state) {
  std::istringstream ss(state);
  std::string kind;
  int64_t cursor = -1;
  uint64_t fingerprint = 0;
  ss >> kind >> cursor >> fingerprint;
  if (ss.fail() || kind != "sft" || cursor < 0 || cursor > rows_)
    throw Error("the checkpoint was not written by dsv2 sft (or its data state is corrupt)");
  if (fingerprint != fingerprint_)
    throw Error("the checkpoint was made with other SFT data or options (--data, --epochs, --seq-len, --seed): "
                "resume with the same ones");
  cursor_ = cursor;
}

}  // namespace dsv2
