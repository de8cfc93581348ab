// Supervised fine-tuning (train/sft_data.h, dsv2 sft): gradients of the packed,
// masked loss against torch autograd (tools/make_sft_fixtures.py); a packed
// batch equal to its conversations run one by one (a leaking mask fails it);
// the assistant-token mask on the shipped model's template; bad input; resume.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "runtime/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/sft_data.h"
#include "train/training_model.h"
#include "train/weights_io.h"
#include "test_util.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

Batch packed_batch(const nlohmann::json& j) {
  Batch b;
  b.batch = j["batch"];
  b.seq_len = j["seq_len"];
  b.inputs = j["inputs"].get<std::vector<int32_t>>();
  b.targets = j["targets"].get<std::vector<int32_t>>();
  b.positions = j["positions"].get<std::vector<int32_t>>();
  b.droppable.assign(b.batch, 0);
  return b;
}

// Every trained tensor's gradient against `want_of` (null: missing), 1e-4 relative.
void expect_gradients_near(const TrainWeights& tw, const std::function<const float*(const ParameterInfo&)>& want_of) {
  int checked = 0;
  for (const auto& info : tw.infos()) {
    if (!info.trained) continue;
    const float* want = want_of(info);
    ASSERT_NE(want, nullptr) << info.name;
    EXPECT_TRUE(test::gradient_near(info.name, tw.grads.data() + info.offset, want, info.size));
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

class SftReference : public testing::TestWithParam<std::string> {};

TEST_P(SftReference, PackedMaskedGradientsMatchTorchAutograd) {
  const std::string dir = test::fixture("sft/" + GetParam());
  TrainWeights tw(load_config(dir));
  load_train_weights(tw, dir);
  const auto j = nlohmann::json::parse(test::read_bytes(dir + "/batch.json"));
  TrainingModel model(tw, MoeTrainingOptions{});
  tw.zero_grads();
  const StepResult r = model.run(packed_batch(j), /*training=*/true, /*backward=*/true);
  EXPECT_NEAR(r.loss, j["loss0"].get<double>(), 1e-5);
  SafetensorsFile expected(dir + "/grads.safetensors");
  expect_gradients_near(tw, [&](const ParameterInfo& info) -> const float* {
    const TensorInfo* t = expected.find(info.name);
    return t && t->numel() == info.size ? reinterpret_cast<const float*>(t->data) : nullptr;
  });
}

INSTANTIATE_TEST_SUITE_P(Torch, SftReference, testing::Values("packed", "packed_tiles"));

// The packed fixture batch against each of its conversations alone (batch of
// one, positions 0..n-1, nothing else to attend to), normalised by the packed
// batch's target count: per-token losses and summed gradients must agree.
TEST(SftPacking, PackedBatchEqualsConversationsRunAlone) {
  const std::string dir = test::fixture("sft/packed_tiles");
  TrainWeights tw(load_config(dir));
  load_train_weights(tw, dir);
  const Batch packed = packed_batch(nlohmann::json::parse(test::read_bytes(dir + "/batch.json")));
  TrainingModel model(tw, MoeTrainingOptions{});
  tw.zero_grads();
  const StepResult whole = model.run(packed, true, true, /*keep_token_losses=*/true);
  const std::vector<float> packed_grads = tw.grads;
  int64_t counted = 0;
  for (int32_t t : packed.targets) counted += t >= 0;

  tw.zero_grads();  // the runs alone add into the same gradient buffer
  const int64_t N = packed.batch * packed.seq_len;
  int conversations = 0;
  for (int64_t start = 0; start < N;) {
    int64_t end = start + 1;
    while (end < N && packed.positions[end] != 0) ++end;
    Batch alone;
    alone.batch = 1;
    alone.seq_len = end - start;
    alone.inputs.assign(packed.inputs.begin() + start, packed.inputs.begin() + end);
    alone.targets.assign(packed.targets.begin() + start, packed.targets.begin() + end);
    alone.droppable = {0};
    alone.global_targets = counted;
    const bool has_targets = std::any_of(alone.targets.begin(), alone.targets.end(), [](int32_t t) { return t >= 0; });
    if (has_targets) {  // padding has none (and adds no gradient)
      const StepResult r = model.run(alone, true, true, true);
      for (int64_t i = 0; i < alone.seq_len; ++i)
        EXPECT_NEAR(r.token_losses[i], whole.token_losses[start + i], 1e-4) << "token " << start + i;
      ++conversations;
    }
    start = end;
  }
  EXPECT_EQ(conversations, 5);
  expect_gradients_near(tw, [&](const ParameterInfo& info) { return packed_grads.data() + info.offset; });

  // Without the positions the rows are plain causal sequences: the test must see the difference.
  Batch leaking = packed;
  leaking.positions.clear();
  const StepResult leaked = model.run(leaking, true, false);
  EXPECT_GT(std::fabs(leaked.loss - whole.loss), 1e-3);
}

TEST(SftPacking, BatchesPackInOrderAndResumeByState) {
  std::vector<SftExample> examples(5);
  for (int i = 0; i < 5; ++i)
    for (int t = 0; t < 3 + 2 * i; ++t) {
      examples[i].tokens.push_back(10 * i + t);
      examples[i].trained.push_back(t >= 2);
    }
  SftBatches a(examples, 16, 2, 7, 99);
  std::vector<Batch> steps;
  for (int64_t s = 0; s < a.steps(2); ++s) steps.push_back(a.next(2, 16));
  int64_t rows = 0, counted = 0;
  for (const Batch& b : steps) {
    rows += b.batch;
    for (int64_t i = 0; i < b.batch * b.seq_len; ++i) {
      counted += b.targets[i] >= 0;
      if (b.inputs[i] == 99) {
        EXPECT_EQ(b.targets[i], -1) << "padding is never a target";
      }
      if (i % b.seq_len == 0) {
        EXPECT_EQ(b.positions[i], 0) << "a row starts a conversation";
      }
    }
  }
  EXPECT_EQ(rows, a.rows());
  EXPECT_EQ(counted, a.trained_tokens());
  // Each conversation of n tokens with trained tokens from index 2: n − 2 targets, twice (two epochs).
  EXPECT_EQ(counted, 2 * (1 + 3 + 5 + 7 + 9));

  SftBatches b(examples, 16, 2, 7, 99);
  b.next(2, 16);
  const std::string state = b.state();
  SftBatches c(examples, 16, 2, 7, 99);
  c.set_state(state);
  EXPECT_EQ(c.next(2, 16).inputs, steps[1].inputs);
  SftBatches other_seed(examples, 16, 2, 8, 99);
  EXPECT_THROW(other_seed.set_state(state), Error);
}

// The shipped model's template ("User: ...\n\nAssistant: ...<eos>"): the
// trained tokens are exactly the answers and their EOS.
TEST(SftData, AssistantTokensOfTheShippedTemplate) {
  const std::string dir = test::fixture("../../models/dsv2-mini");
  const auto tokenizer = Tokenizer::load(dir);
  const ChatRenderer render = make_chat_renderer(*tokenizer, dir + "/tokenizer_config.json");
  const std::vector<ChatMessage> messages = {
      {"system", "Be brief."}, {"user", "2 + 3?"}, {"assistant", "5."}, {"user", "春眠不觉晓，"}, {"assistant", "处处闻啼鸟。"}};
  const SftExample e = tokenize_conversation(messages, *tokenizer, render);
  std::vector<int32_t> prompt, answers;
  for (size_t i = 0; i < e.tokens.size(); ++i) (e.trained[i] ? answers : prompt).push_back(e.tokens[i]);
  const std::string eos = tokenizer->id_to_token(tokenizer->eos_id());
  EXPECT_EQ(tokenizer->decode(answers), " 5." + eos + " 处处闻啼鸟。" + eos);
  EXPECT_EQ(tokenizer->decode(prompt), tokenizer->id_to_token(tokenizer->bos_id()) +
                                           "Be brief.\n\nUser: 2 + 3?\n\nAssistant:User: 春眠不觉晓，\n\nAssistant:");
  // The prompt tokens are what `dsv2 chat` feeds the model before it answers.
  const std::vector<ChatMessage> first(messages.begin(), messages.begin() + 2);
  const auto chat_prompt = tokenizer->encode(render(first, true), {false, true});
  EXPECT_EQ(std::vector<int32_t>(e.tokens.begin(), e.tokens.begin() + chat_prompt.size()), chat_prompt);
}

std::string sft_command(const std::string& data, const std::string& out, const std::string& extra = "") {
  return "sft -m " + test::fixture("v2_lite") + " --data " + data + " --out " + out +
         " --seq-len 96 --batch-tokens 192 --lr 1e-3 --threads 2 " + extra;
}

TEST(SftCli, BadInputNamesFileAndLineAndWritesNothing) {
  test::TempDir dir;
  const std::string good = R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})";
  const std::string long_prompt = R"({"messages": [{"role": "user", "content": ")" + std::string(400, 'x') +
                                  R"("}, {"role": "assistant", "content": "ok"}]})";
  const std::pair<std::string, std::string> cases[] = {
      {"[1, 2]", "not a JSON object"},
      {"{\"messages\": [", "not valid JSON"},
      {"{\"text\": \"hi\"}", "no \"messages\" list"},
      {R"({"messages": [{"role": "user", "content": "hi"}]})", "no assistant message"},
      {R"({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]})", "message 1 has no string \"content\""},
      {long_prompt, "longer than the context (--seq-len 96)"},
  };
  for (const auto& [line, message] : cases) {
    const std::string data = dir.path("bad.jsonl"), out = dir.path("out");
    test::write_bytes(data, good + "\n\n" + good + "\n" + line + "\n" + good + "\n");
    const auto r = test::run_dsv2(sft_command(data, out));
    EXPECT_EQ(r.exit_code, 1) << line;
    EXPECT_NE(r.err.find(data + ":4: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(out)) << "nothing is written for bad data";
  }
  test::write_bytes(dir.path("empty.jsonl"), "\n");
  const auto empty = test::run_dsv2(sft_command(dir.path("empty.jsonl"), dir.path("out")));
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_NE(empty.err.find("empty.jsonl: no conversations"), std::string::npos) << empty.err;
  EXPECT_EQ(test::run_dsv2(sft_command(dir.path("missing.jsonl"), dir.path("out"))).exit_code, 1);
  EXPECT_EQ(test::run_dsv2(sft_command(dir.path("missing.jsonl"), dir.path("out"), "--seq-len 100000")).exit_code, 2);
}

void write_sums(const std::string& path, int first, int count) {
  std::ofstream f(path);
  for (int i = first; i < first + count; ++i)
    f << R"({"messages": [{"role": "user", "content": "What is )" << i << " + " << 2 * i
      << R"(?"}, {"role": "assistant", "content": ")" << 3 * i << R"(."}]})" << "\n";
}

// --validation: held-out conversations evaluated every --eval-every steps and at
// the end; the last val_loss is the saved model's loss on those conversations
// run one at a time; a bad validation line is an error before anything is written.
TEST(SftCli, ValidationConversationsAreEvaluatedOnTheSavedModel) {
  test::TempDir dir;
  const std::string data = dir.path("train.jsonl"), held_out = dir.path("held_out.jsonl"), out = dir.path("out");
  write_sums(data, 0, 120);
  write_sums(held_out, 500, 7);
  const auto r = test::run_dsv2(sft_command(data, out, "--validation " + held_out + " --eval-every 4 --epochs 1"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::pair<int64_t, double>> validations;
  int64_t last_step = -1;
  for (const auto& line : test::logged_lines(out)) {
    last_step = line["step"];
    if (line.contains("val_loss")) validations.emplace_back(line["step"], line["val_loss"]);
  }
  ASSERT_GE(validations.size(), 2u);
  EXPECT_EQ(validations.front().first, 3);
  EXPECT_EQ(validations.back().first, last_step) << "the end of the run is always validated";
  EXPECT_LT(validations.back().second, validations.front().second);

  // The saved model on each held-out conversation alone, its targets counted over all of them.
  const auto tokenizer = Tokenizer::load(out);
  const ChatRenderer render = make_chat_renderer(*tokenizer, out + "/tokenizer_config.json");
  const SftData held = load_sft_files({held_out}, *tokenizer, render, 96);
  TrainWeights tw(load_config(out));
  load_train_weights(tw, out);
  TrainingModel model(tw, MoeTrainingOptions{});
  double nats = 0.0;
  int64_t targets = 0;
  for (const SftExample& e : held.examples) {
    Batch alone;
    alone.batch = 1;
    alone.seq_len = static_cast<int64_t>(e.tokens.size()) - 1;
    alone.inputs.assign(e.tokens.begin(), e.tokens.end() - 1);
    for (size_t i = 1; i < e.tokens.size(); ++i) alone.targets.push_back(e.trained[i] ? e.tokens[i] : -1);
    alone.droppable = {0};
    const StepResult s = model.run(alone, false, false);
    nats += s.loss * s.targets;
    targets += s.targets;
  }
  EXPECT_NEAR(validations.back().second, nats / targets, 1e-4);

  test::write_bytes(held_out, test::read_bytes(held_out) + "[1]\n");
  const auto bad = test::run_dsv2(sft_command(data, dir.path("out2"), "--validation " + held_out));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find(held_out + ":8: not a JSON object"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir.path("out2")));
}

// Killed after a checkpoint and resumed: the same losses and final weights, bit for bit.
TEST(SftCli, KilledAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  const std::string data = dir.path("c.jsonl");
  write_sums(data, 0, 200);
  const std::string whole = dir.path("whole"), cut = dir.path("cut");
  const auto full = test::run_dsv2(sft_command(data, whole, "--checkpoint-every 3"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const auto expected = test::logged_losses(whole);
  ASSERT_GE(expected.size(), 10u);
  EXPECT_LT(expected.back(), expected.front());

  EXPECT_TRUE(test::kill_when_logged(sft_command(data, cut, "--checkpoint-every 3"), cut, 5)) << "the kill should land mid-run";
  const auto resumed = test::run_dsv2(sft_command(data, cut, "--checkpoint-every 3 --resume"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::logged_losses(cut), expected);
  EXPECT_EQ(test::read_bytes(cut + "/model.safetensors"), test::read_bytes(whole + "/model.safetensors"));

  // Other data cannot continue this run's checkpoint.
  test::write_bytes(data, test::read_bytes(data) + R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})" "\n");
  const auto mixed = test::run_dsv2(sft_command(data, cut, "--checkpoint-every 3 --resume"));
  EXPECT_EQ(mixed.exit_code, 1);
  EXPECT_NE(mixed.err.find("other SFT data"), std::string::npos) << mixed.err;
}

}  // namespace
}  // namespace dsv2
