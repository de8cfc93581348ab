#include "runtime/reward_model.h"

#include "core/error.h"
#include "model/latent_cache.h"
#include "ops/matmul.h"

namespace dsv2 {

RewardModel::RewardModel(const std::string& dir) {
  const Config config = load_config(dir);
  if (!config.is_reward_model())
    throw Error(dir + ": not a reward model (config.json's architectures name no ...ForSequenceClassification; "
                      "train one with dsv2 rm)");
  model_ = std::make_unique<Model>(dir);
  if (Tokenizer::exists_in(dir)) {
    tokenizer_ = Tokenizer::load(dir);
    render_ = make_chat_renderer(*tokenizer_, dir + "/tokenizer_config.json");
  }
  head_.resize(config.hidden_size);
  model_->weights().score.dequantize_row(0, head_.data());  // float32 whatever it is stored in (--save-bf16)
}

const Tokenizer& RewardModel::tokenizer() const {
  if (!tokenizer_) throw Error("reward model: no tokenizer.json in the model directory");
  return *tokenizer_;
}

float RewardModel::score(const std::vector<int32_t>& ids) {
  const Config& c = model_->config();
  const int64_t n = static_cast<int64_t>(ids.size()), d = c.hidden_size;
  if (n == 0) throw Error("reward model: no tokens to score");
  if (n > c.max_position_embeddings)
    throw Error("reward model: " + std::to_string(n) + " tokens, longer than the model's context (" +
                std::to_string(c.max_position_embeddings) + ")");
  LatentCache cache(c, n);
  logits_.resize(c.vocab_size);
  hidden_.resize(n * d);
  // The last row's logits are computed too (forward always runs the LM head); only h is read.
  model_->forward(ids.data(), n, cache, AttentionPath::kAbsorbed, logits_.data(), /*last_only=*/true, hidden_.data());
  return dot(head_.data(), hidden_.data() + (n - 1) * d, d);
}

RewardAccuracy reward_accuracy(RewardModel& model, const RewardData& data,
                               const std::function<void(size_t, const ExampleScores&)>& each) {
  RewardAccuracy a;
  int64_t right = 0, scored = 0;
  for (size_t i = 0; i < data.examples.size(); ++i) {
    const RewardExample& e = data.examples[i];
    ExampleScores s;
    s.chosen = model.score(e.chosen.tokens);
    if (e.pairwise) {
      s.rejected = model.score(e.rejected.tokens);
      a.margin += s.chosen - s.rejected;
      right += s.chosen > s.rejected;
      ++a.items;
    } else {
      a.margin += s.chosen;
      if (e.label >= 0) right += (s.chosen > 0) == (e.label == 1), ++a.items;
    }
    ++scored;
    if (each) each(i, s);
  }
  a.accuracy = a.items ? static_cast<double>(right) / a.items : 0.0;
  a.margin = scored ? a.margin / scored : 0.0;
  return a;
}

namespace {

class ModelReward : public Reward {
 public:
  explicit ModelReward(const std::string& dir) : model_(dir) {}
  std::vector<double> score(const std::vector<RewardInput>& inputs) override {
    std::vector<double> scores;
    for (const RewardInput& input : inputs) scores.push_back(model_.score(input.tokens));
    return scores;
  }

 private:
  RewardModel model_;
};

}  // namespace

std::unique_ptr<Reward> make_model_reward(const std::string& dir) { return std::make_unique<ModelReward>(dir); }

}  // namespace dsv2
