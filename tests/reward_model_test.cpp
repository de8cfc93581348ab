// Reward models (train/reward_data.h, runtime/reward_model.h, dsv2 rm and
// rm-score): gradients of the pair-wise and point-wise losses against torch
// autograd (tools/make_rm_fixtures.py), every parameter and score.weight; the
// inference scores against transformers' and against the training forward's;
// bad JSONL lines; a short training run that learns to prefer chosen answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model/config.h"
#include "ops/matmul.h"
#include "runtime/reward_model.h"
#include "train/reward_data.h"
#include "train/training_model.h"
#include "train/weights_io.h"
#include "test_util.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

RewardExample fixture_example(const nlohmann::json& j, bool pairwise) {
  RewardExample e;
  e.pairwise = pairwise;
  if (pairwise) {
    e.chosen.tokens = j["chosen"].get<std::vector<int32_t>>();
    e.rejected.tokens = j["rejected"].get<std::vector<int32_t>>();
  } else {
    e.chosen.tokens = j["completion"].get<std::vector<int32_t>>();
    e.label = j["label"];
  }
  return e;
}

class RmReference : public testing::TestWithParam<std::string> {};

// All the examples in one batch (a row each, padded to the longest): the loss
// and every parameter's gradient as torch autograd computes them.
TEST_P(RmReference, GradientsMatchTorchAutograd) {
  const std::string dir = test::fixture("rm/" + GetParam());
  const Config config = load_config(dir);
  ASSERT_TRUE(config.is_reward_model());
  TrainWeights tw(config);
  load_train_weights(tw, dir);
  const auto j = nlohmann::json::parse(test::read_bytes(dir + "/examples.json"));
  const bool pairwise = j["pairwise"];
  std::vector<RewardExample> examples;
  for (const auto& e : j["examples"]) examples.push_back(fixture_example(e, pairwise));
  std::vector<const RewardExample*> all;
  for (const auto& e : examples) all.push_back(&e);
  const Batch batch = reward_batch(all, /*pad_id=*/3);
  TrainingModel model(tw, MoeTrainingOptions{});
  tw.zero_grads();
  const StepResult r = model.run_hidden(batch, /*training=*/true, /*backward=*/true, [&](const float* h, float* d_h) {
    return reward_head(h, batch, config.hidden_size, f32(tw.w().score), pairwise, d_h, mut(tw.g().score)).loss;
  });
  EXPECT_NEAR(r.loss, j["loss0"].get<double>(), 1e-5);
  SafetensorsFile expected(dir + "/grads.safetensors");
  int checked = 0;
  for (const auto& info : tw.infos()) {
    if (!info.trained || info.frozen) continue;  // the routing bias; the LM head (the loss never reads it)
    const TensorInfo* t = expected.find(info.name);
    ASSERT_TRUE(t && t->numel() == info.size) << info.name;
    EXPECT_TRUE(test::gradient_near(info.name, tw.grads.data() + info.offset, reinterpret_cast<const float*>(t->data), info.size));
    ++checked;
  }
  EXPECT_GT(checked, 20);
  EXPECT_NE(expected.find("score.weight"), nullptr);
}

// The inference model reads the same directory and scores as transformers'
// DeepseekV2ForSequenceClassification did (the fixture script checks that one
// against the hand-computed scores).
TEST_P(RmReference, InferenceScoresMatchTransformers) {
  const std::string dir = test::fixture("rm/" + GetParam());
  const auto j = nlohmann::json::parse(test::read_bytes(dir + "/examples.json"));
  RewardModel rm(dir);
  for (const auto& e : j["examples"]) {
    const auto want = e["scores"].get<std::vector<double>>();
    const auto first = (j["pairwise"] ? e["chosen"] : e["completion"]).get<std::vector<int32_t>>();
    EXPECT_NEAR(rm.score(first), want[0], 1e-4);
    if (j["pairwise"]) {
      EXPECT_NEAR(rm.score(e["rejected"].get<std::vector<int32_t>>()), want[1], 1e-4);
    }
  }
}

// GRPO's --reward-model: the reward of a completion is the model's score of prompt ++ completion.
TEST(RmData, ModelRewardScoresPromptAndCompletionTokens) {
  const std::string dir = test::fixture("rm/pairs");
  const auto j = nlohmann::json::parse(test::read_bytes(dir + "/examples.json"));
  const auto reward = make_model_reward(dir);
  std::vector<RewardInput> inputs;
  for (const auto& e : j["examples"]) inputs.push_back({nullptr, "", true, e["chosen"].get<std::vector<int32_t>>()});
  const std::vector<double> scores = reward->score(inputs);
  ASSERT_EQ(scores.size(), j["examples"].size());
  for (size_t i = 0; i < scores.size(); ++i) EXPECT_NEAR(scores[i], j["examples"][i]["scores"][0].get<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Torch, RmReference, testing::Values("pairs", "pointwise"));

TEST(RmData, LanguageModelWithoutScoreLoadsWithItsInitialValue) {
  Config config = load_config(test::fixture("v2_lite"));
  config.num_labels = 1;
  TrainWeights tw(config);
  tw.init(0.02f, 7);
  const std::vector<float> head(tw.value("score.weight"), tw.value("score.weight") + config.hidden_size);
  load_train_weights(tw, test::fixture("v2_lite"));
  EXPECT_EQ(std::vector<float>(tw.value("score.weight"), tw.value("score.weight") + config.hidden_size), head);
  for (const auto& info : tw.infos()) EXPECT_EQ(info.frozen, info.name == "lm_head.weight") << info.name;
}

// "What is a + b?" with the right sum as chosen and a wrong one as rejected.
std::string arithmetic_pairs(int count, int seed) {
  std::string out;
  uint64_t s = static_cast<uint64_t>(seed) * 2654435761u + 1;
  auto next = [&] { return static_cast<int>((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 33) % 50; };
  for (int i = 0; i < count; ++i) {
    const int a = next(), b = next();
    out += nlohmann::json({{"prompt", {{{"role", "user"}, {"content", "What is " + std::to_string(a) + " + " + std::to_string(b) + "?"}}}},
                           {"chosen", std::to_string(a + b) + "."},
                           {"rejected", "I do not know."}})
               .dump() +
           "\n";
  }
  return out;
}

std::string rm_command(const std::string& data, const std::string& out, const std::string& extra = "") {
  return "rm -m " + test::fixture("v2_lite") + " --data " + data + " --out " + out +
         " --max-length 48 --batch-size 8 --lr 1e-3 --threads 2 " + extra;
}

TEST(RmCli, BadInputNamesFileAndLineAndWritesNothing) {
  test::TempDir dir;
  const std::string good = R"({"prompt": "2 + 3 = ", "chosen": "5", "rejected": "6"})";
  const std::pair<std::string, std::string> cases[] = {
      {"[1, 2]", "not a JSON object"},
      {"{\"prompt\": ", "not valid JSON"},
      {R"({"chosen": "5", "rejected": "6"})", "no \"prompt\""},
      {R"({"prompt": "2 + 3 = ", "chosen": "5"})", "no \"rejected\""},
      {R"({"prompt": "2 + 3 = ", "chosen": 5, "rejected": "6"})", "\"chosen\" is not a string"},
      {R"({"prompt": [{"role": "user"}], "chosen": "5", "rejected": "6"})", "message 1 has no string \"content\""},
      {R"({"prompt": "x", "completion": "5", "label": 1})", "a point-wise example among pairs"},
      {R"({"prompt": ")" + std::string(300, 'x') + R"(", "chosen": "5", "rejected": "6"})",
       "longer than the context (--max-length 48)"},
  };
  for (const auto& [line, message] : cases) {
    const std::string data = dir.path("bad.jsonl"), out = dir.path("out");
    test::write_bytes(data, good + "\n\n" + good + "\n" + line + "\n" + good + "\n");
    const auto r = test::run_dsv2(rm_command(data, out));
    EXPECT_EQ(r.exit_code, 1) << line;
    EXPECT_NE(r.err.find(data + ":4: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(out)) << "nothing is written for bad data";
  }
  test::write_bytes(dir.path("point.jsonl"), R"({"prompt": "x", "completion": "5", "label": 2})" "\n");
  const auto label = test::run_dsv2(rm_command(dir.path("point.jsonl"), dir.path("out")));
  EXPECT_NE(label.err.find("point.jsonl:1: no \"label\" 0 or 1"), std::string::npos) << label.err;
  // A bad held-out file is found before training too.
  test::write_bytes(dir.path("good.jsonl"), good + "\n");
  test::write_bytes(dir.path("eval.jsonl"), "[]\n");
  const auto eval = test::run_dsv2(rm_command(dir.path("good.jsonl"), dir.path("out"), "--eval-data " + dir.path("eval.jsonl")));
  EXPECT_NE(eval.err.find("eval.jsonl:1: not a JSON object"), std::string::npos) << eval.err;
  EXPECT_FALSE(fs::exists(dir.path("out")));
}

// A few seconds of training: the pair accuracy rises from chance to (nearly)
// all held-out pairs, and the inference model scores as the training forward.
TEST(RmCli, TrainingLearnsThePreferenceAndScoresAsTrained) {
  test::TempDir dir;
  const std::string train = dir.path("train.jsonl"), held = dir.path("held.jsonl"), out = dir.path("rm");
  test::write_bytes(train, arithmetic_pairs(64, 1));
  test::write_bytes(held, arithmetic_pairs(16, 2));
  const auto r = test::run_dsv2(rm_command(train, out, "--epochs 2 --eval-data " + held));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = test::logged_lines(out);
  ASSERT_EQ(lines.size(), 16u);
  EXPECT_NEAR(lines.front()["loss"].get<double>(), std::log(2.0), 0.1) << "an untrained head scores near 0";
  EXPECT_LT(lines.front()["accuracy"].get<double>(), 0.9);
  EXPECT_LT(lines.back()["loss"].get<double>(), 0.45);
  const auto eval = nlohmann::json::parse(test::read_bytes(out + "/eval.json"));
  EXPECT_GE(eval["accuracy"].get<double>(), 0.95);
  EXPECT_GT(eval["margin"].get<double>(), 0.5);
  const Config config = load_config(out);
  EXPECT_TRUE(config.is_reward_model());
  EXPECT_NE(test::read_bytes(out + "/config.json").find("DeepseekV2ForSequenceClassification"), std::string::npos);

  // The inference model's score of a pair's sequences against the training forward's h · score.
  RewardModel rm(out);
  const RewardExample e = parse_reward_line(arithmetic_pairs(1, 3), rm.tokenizer(), rm.renderer());
  TrainWeights tw(config);
  load_train_weights(tw, out);
  TrainingModel model(tw, MoeTrainingOptions{});
  const Batch batch = reward_batch({&e}, 0);
  std::vector<float> scores;
  model.run_hidden(batch, /*training=*/false, /*backward=*/false, [&](const float* h, float*) {
    for (int64_t t = 0; t < batch.seq_len; ++t)
      if (batch.targets[t] >= 0) scores.push_back(dot(f32(tw.w().score), h + t * config.hidden_size, config.hidden_size));
    return 0.0;
  });
  ASSERT_EQ(scores.size(), 2u);
  EXPECT_NEAR(rm.score(e.chosen.tokens), scores[0], 1e-4);
  EXPECT_NEAR(rm.score(e.rejected.tokens), scores[1], 1e-4);
  EXPECT_GT(scores[0], scores[1]);

  // dsv2 rm-score: a line per example, the accuracy on stderr.
  const auto scored = test::run_dsv2("rm-score -m " + out + " --data " + held + " --threads 2");
  ASSERT_EQ(scored.exit_code, 0) << scored.err;
  EXPECT_EQ(std::count(scored.out.begin(), scored.out.end(), '\n'), 16);
  const auto first = nlohmann::json::parse(scored.out.substr(0, scored.out.find('\n')));
  EXPECT_EQ(first["line"], 1);
  EXPECT_EQ(first["chosen_wins"], first["chosen"].get<double>() > first["rejected"].get<double>());
  EXPECT_NE(scored.err.find("16 pairs: accuracy"), std::string::npos) << scored.err;
  // A language model is not a reward model.
  const auto lm = test::run_dsv2("rm-score -m " + test::fixture("v2_lite") + " --data " + held);
  EXPECT_EQ(lm.exit_code, 1);
  EXPECT_NE(lm.err.find("not a reward model"), std::string::npos) << lm.err;
}

// Killed after a checkpoint and resumed: the same log and final weights, bit for bit.
TEST(RmCli, KilledAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  const std::string data = dir.path("train.jsonl"), whole = dir.path("whole"), cut = dir.path("cut");
  test::write_bytes(data, arithmetic_pairs(48, 4));
  const auto full = test::run_dsv2(rm_command(data, whole, "--epochs 2 --checkpoint-every 3"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  EXPECT_TRUE(test::kill_when_logged(rm_command(data, cut, "--epochs 2 --checkpoint-every 3"), cut, 5)) << "the kill should land mid-run";
  const auto resumed = test::run_dsv2(rm_command(data, cut, "--epochs 2 --checkpoint-every 3 --resume"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::logged_losses(cut), test::logged_losses(whole));
  EXPECT_EQ(test::read_bytes(cut + "/model.safetensors"), test::read_bytes(whole + "/model.safetensors"));
  // Other data cannot continue this run's checkpoint.
  test::write_bytes(data, arithmetic_pairs(49, 4));
  const auto mixed = test::run_dsv2(rm_command(data, cut, "--epochs 2 --checkpoint-every 3 --resume"));
  EXPECT_EQ(mixed.exit_code, 1);
  EXPECT_NE(mixed.err.find("other reward data"), std::string::npos) << mixed.err;
}

}  // namespace
}  // namespace dsv2
