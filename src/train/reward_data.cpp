#include "train/reward_data.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/jsonl.h"
#include "ops/matmul.h"
#include "tokenizer/tokenizer.h"
#include "train/sft_data.h"

namespace dsv2 {

namespace {

// An answer: a string, or TRL's conversational [{"role": "assistant", "content": "..."}].
std::string answer_text(const nlohmann::json& answer, const char* field) {
  if (answer.is_string()) return answer.get<std::string>();
  if (answer.is_array() && answer.size() == 1) {
    const auto messages = parse_message_list(answer);
    if (messages[0].role == "assistant") return messages[0].content;
  }
  throw Error(std::string("\"") + field + "\" is not a string (or a list of one assistant message)");
}

uint64_t fnv(uint64_t h, int64_t v) { return (h ^ static_cast<uint64_t>(v)) * 1099511628211ull; }

// Numerically stable log(1 + e^x) and σ(x).
double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

RewardSequence reward_sequence(const nlohmann::json& prompt, const nlohmann::json& answer, const Tokenizer& tokenizer,
                               const ChatRenderer& render, const char* field) {
  RewardSequence s;
  if (prompt.is_string()) {  // raw text, as TRL's standard (non-conversational) format concatenates it
    const std::string text = prompt.get<std::string>();
    s.tokens = tokenizer.encode(text + answer_text(answer, field));
    s.prompt_tokens = static_cast<int64_t>(tokenizer.encode(text).size());
    return s;
  }
  if (!prompt.is_array()) throw Error("\"prompt\" is neither a string nor a list of messages");
  std::vector<ChatMessage> messages = parse_message_list(prompt);
  messages.push_back({"assistant", answer_text(answer, field)});
  // The same rendering and tokenization as dsv2 sft (and dsv2 chat's prompt).
  const SftExample e = tokenize_conversation(messages, tokenizer, render);
  s.tokens = e.tokens;
  s.prompt_tokens = std::find(e.trained.begin(), e.trained.end(), 1) - e.trained.begin();
  return s;
}

RewardExample parse_reward_line(const std::string& line, const Tokenizer& tokenizer, const ChatRenderer& render,
                                bool require_label) {
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw Error("not valid JSON");
  if (!j.is_object())
    throw Error("not a JSON object (expected {\"prompt\", \"chosen\", \"rejected\"} or {\"prompt\", \"completion\", \"label\"})");
  if (!j.contains("prompt")) throw Error("no \"prompt\"");
  RewardExample e;
  auto sequence = [&](const char* field) { return reward_sequence(j["prompt"], j[field], tokenizer, render, field); };
  if (j.contains("chosen") || j.contains("rejected")) {
    for (const char* field : {"chosen", "rejected"})
      if (!j.contains(field)) throw Error(std::string("no \"") + field + "\" (a pair needs \"chosen\" and \"rejected\")");
    e.chosen = sequence("chosen");
    e.rejected = sequence("rejected");
    return e;
  }
  if (!j.contains("completion"))
    throw Error("no \"chosen\" and \"rejected\" (pair-wise) nor \"completion\" and \"label\" (point-wise)");
  const auto& label = j.contains("label") ? j["label"] : nlohmann::json();
  e.pairwise = false;
  if (label.is_null() && !require_label) {
    e.label = -1;
  } else if (label.is_boolean()) {
    e.label = label.get<bool>();
  } else if (label.is_number_integer() && (label.get<int64_t>() == 0 || label.get<int64_t>() == 1)) {
    e.label = static_cast<int>(label.get<int64_t>());
  } else {
    throw Error("no \"label\" 0 or 1 (or true / false) for the completion");
  }
  e.chosen = sequence("completion");
  return e;
}

RewardData load_reward_files(const std::vector<std::string>& files, const Tokenizer& tokenizer,
                             const ChatRenderer& render, int64_t max_length, bool require_label) {
  RewardData data;
  for_each_jsonl_line(files, [&](const std::string& line, int64_t number) {
    RewardExample e = parse_reward_line(line, tokenizer, render, require_label);
    e.line = number;
    if (data.examples.empty()) data.pairwise = e.pairwise;
    if (e.pairwise != data.pairwise)
      throw Error(std::string(e.pairwise ? "a pair among point-wise examples" : "a point-wise example among pairs") +
                  " (one kind per run)");
    for (const auto* s : {&e.chosen, &e.rejected}) {
      if (s == &e.rejected && !e.pairwise) break;
      const char* which = !e.pairwise ? "completion" : s == &e.chosen ? "chosen" : "rejected";
      if (s->prompt_tokens >= max_length)
        throw Error("the prompt is " + std::to_string(s->prompt_tokens) + " tokens, longer than the context (--max-length " +
                    std::to_string(max_length) + ")");
      if (static_cast<int64_t>(s->tokens.size()) > max_length)
        throw Error("prompt + " + std::string(which) + " is " + std::to_string(s->tokens.size()) +
                    " tokens, longer than the context (--max-length " + std::to_string(max_length) + ")");
      if (s->tokens.empty()) throw Error("prompt + " + std::string(which) + " is no token at all");
    }
    data.examples.push_back(std::move(e));
  });
  if (data.examples.empty()) throw Error(files.front() + (files.size() > 1 ? " and the other files" : "") + ": no examples");
  return data;
}

Batch reward_batch(const std::vector<const RewardExample*>& examples, int32_t pad_id) {
  Batch b;
  b.batch = static_cast<int64_t>(examples.size());
  for (const RewardExample* e : examples)
    b.seq_len = std::max<int64_t>(b.seq_len, static_cast<int64_t>(e->chosen.tokens.size() + e->rejected.tokens.size()));
  for (const RewardExample* e : examples) {
    int64_t used = 0;
    auto put = [&](const std::vector<int32_t>& tokens, int32_t mark) {
      const int64_t n = static_cast<int64_t>(tokens.size());
      for (int64_t t = 0; t < n; ++t) {
        b.inputs.push_back(tokens[t]);
        b.targets.push_back(t + 1 == n ? mark : -1);
        b.positions.push_back(static_cast<int32_t>(t));
      }
      used += n;
    };
    put(e->chosen.tokens, e->pairwise ? 1 : e->label);
    if (e->pairwise) put(e->rejected.tokens, 0);
    for (int32_t p = 0; used < b.seq_len; ++used, ++p) {  // padding: its own positions, no score
      b.inputs.push_back(pad_id);
      b.targets.push_back(-1);
      b.positions.push_back(p);
    }
  }
  b.droppable.assign(b.batch, 0);
  return b;
}

RewardBatches::RewardBatches(const RewardData& data, int64_t epochs, uint64_t seed, int32_t pad_id)
    : data_(data), pad_(pad_id) {
  require(epochs >= 1 && pad_id >= 0 && !data.examples.empty(), "reward batches: need examples, epochs >= 1 and a pad token");
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    const std::vector<size_t> order = epoch_order(data.examples.size(), seed, epoch);
    order_.insert(order_.end(), order.begin(), order.end());
  }
  uint64_t h = 1469598103934665603ull;
  h = fnv(fnv(h, epochs), static_cast<int64_t>(seed));
  for (const RewardExample& e : data.examples) {
    h = fnv(fnv(h, e.pairwise), e.label);
    for (const auto* s : {&e.chosen, &e.rejected})
      for (int32_t t : s->tokens) h = fnv(h, t);
  }
  fingerprint_ = h;
}

int64_t RewardBatches::steps(int64_t rows_per_step) const {
  return (static_cast<int64_t>(order_.size()) + rows_per_step - 1) / rows_per_step;
}

Batch RewardBatches::next(int64_t sequences, int64_t) {
  require(cursor_ < order_.size(), "reward batches: the run has no more examples");
  std::vector<const RewardExample*> step;
  for (; cursor_ < order_.size() && static_cast<int64_t>(step.size()) < sequences; ++cursor_)
    step.push_back(&data_.examples[order_[cursor_]]);
  return reward_batch(step, pad_);
}

std::string RewardBatches::state() const { return plan_state("rm", static_cast<int64_t>(cursor_), fingerprint_); }

void RewardBatches::set_state(const std::string& state) {
  cursor_ = static_cast<size_t>(plan_cursor(state, "rm", static_cast<int64_t>(order_.size()), fingerprint_, "dsv2 rm",
                                            "reward data or options (--data, --epochs, --seed)"));
}

RewardMetrics reward_head(const float* h, const Batch& batch, int64_t d, const float* score, bool pairwise, float* d_h,
                          float* g_score) {
  const int64_t T = batch.seq_len;
  // Per row: the token indices of its scores (pair-wise: chosen, rejected; point-wise: one).
  struct Read {
    int64_t chosen = -1, rejected = -1;
    int label = -1;
  };
  std::vector<Read> reads;
  for (int64_t row = 0; row < batch.batch; ++row) {
    Read r;
    for (int64_t t = 0; t < T; ++t) {
      const int32_t mark = batch.targets[row * T + t];
      if (mark < 0) continue;
      if (!pairwise) {
        reads.push_back({row * T + t, -1, mark});
      } else {
        require(mark == 0 || mark == 1, "reward batch: a pair's marks are 1 (chosen) and 0 (rejected)");
        require((mark ? r.chosen : r.rejected) < 0, "reward batch: a row with more than one pair");
        (mark ? r.chosen : r.rejected) = row * T + t;
      }
    }
    if (pairwise) {
      require(r.chosen >= 0 && r.rejected >= 0, "reward batch: a row without its chosen and rejected");
      reads.push_back(r);
    }
  }
  require(!reads.empty(), "reward batch: no scores to read");
  RewardMetrics m;
  m.items = static_cast<int64_t>(reads.size());
  const double scale = 1.0 / static_cast<double>(m.items);
  auto r_at = [&](int64_t n) { return static_cast<double>(dot(score, h + n * d, d)); };
  // d loss / d r at token n: into d_h (the head's weights) and g_score (the states).
  auto backward = [&](int64_t n, double d_r) {
    if (!d_h) return;
    axpy(static_cast<float>(d_r), score, d_h + n * d, d);
    if (g_score) axpy(static_cast<float>(d_r), h + n * d, g_score, d);
  };
  for (const Read& r : reads) {
    if (pairwise) {
      const double margin = r_at(r.chosen) - r_at(r.rejected);
      m.loss += softplus(-margin) * scale;  // −log σ(margin)
      m.accuracy += (margin > 0) * scale;
      m.margin += margin * scale;
      const double d_margin = -sigmoid(-margin) * scale;
      backward(r.chosen, d_margin);
      backward(r.rejected, -d_margin);
    } else {
      const double x = r_at(r.chosen);
      m.loss += (softplus(x) - r.label * x) * scale;  // −[y log σ(x) + (1 − y) log(1 − σ(x))]
      m.accuracy += ((x > 0) == (r.label == 1)) * scale;
      m.margin += x * scale;
      backward(r.chosen, (sigmoid(x) - r.label) * scale);
    }
  }
  return m;
}

StepResult RewardObjective::step(TrainingModel& model, TrainWeights& weights, const Batch& batch) {
  const Weights& w = weights.w();
  require(!w.score.empty(), "reward model training: the model has no score head (config num_labels)");
  return model.run_hidden(batch, /*training=*/true, /*backward=*/true, [&](const float* h, float* d_h) {
    last_ = reward_head(h, batch, weights.config().hidden_size, f32(w.score), pairwise_, d_h, d_h ? mut(weights.g().score) : nullptr);
    return last_.loss;
  });
}

void RewardObjective::add_metrics(nlohmann::ordered_json& line) const {
  line[pairwise_ ? "pairs" : "items"] = last_.items;
  line["accuracy"] = last_.accuracy;
  line[pairwise_ ? "margin" : "mean_score"] = last_.margin;
}

}  // namespace dsv2
