// GRPO (train/grpo.h, dsv2 grpo): the objective's gradient against torch
// autograd (tools/make_grpo_fixtures.py), a group with equal rewards gives no
// policy gradient, the KL term and its gradient vanish when policy = reference;
// sampling from the training weights in place (runtime/rollout.h); rewards
// and their failures; bad prompt files; a short run end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "runtime/generator.h"
#include "runtime/rollout.h"
#include "train/grpo.h"
#include "train/rewards.h"
#include "train/training_model.h"
#include "train/weights_io.h"
#include "test_util.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

struct Fixture {
  std::string dir = test::fixture("grpo/group");
  nlohmann::json j = nlohmann::json::parse(test::read_bytes(dir + "/case.json"));
  int64_t G = static_cast<int64_t>(j["completions"].size());
  Batch batch() const {
    Batch b;
    b.batch = G;
    b.seq_len = j["seq_len"];
    b.inputs = j["inputs"].get<std::vector<int32_t>>();
    b.targets = j["targets"].get<std::vector<int32_t>>();
    b.droppable.assign(G, 0);
    return b;
  }
  // The per-token terms with the fixture's advantages and log-probabilities.
  std::vector<GrpoToken> terms(const std::vector<double>& advantages) const {
    const Batch b = batch();
    std::vector<GrpoToken> t(b.batch * b.seq_len);
    for (int64_t i = 0; i < b.batch; ++i)
      for (int64_t s = 0; s < b.seq_len; ++s) {
        const int64_t row = i * b.seq_len + s;
        if (b.targets[row] < 0) continue;
        t[row].weight = 1.0f / static_cast<float>(G * j["completions"][i].size());
        t[row].advantage = static_cast<float>(advantages[i]);
        t[row].ref_logp = j["ref_logp"][row];
        t[row].old_logp = j["old_logp"][row];
      }
    return t;
  }
};

// Runs the policy with the objective of `terms`; returns the result (gradients in tw.grads).
StepResult run_objective(TrainWeights& tw, const Batch& b, const std::vector<GrpoToken>& terms,
                         const GrpoObjectiveOptions& o) {
  TrainingModel model(tw, MoeTrainingOptions{});
  const TokenObjective coefficient = [&](int64_t row, float logp) { return grpo_coefficient(terms[row], logp, o); };
  model.set_token_objective(&coefficient);
  tw.zero_grads();
  return model.run(b, true, true);
}

TEST(GrpoReference, ObjectiveGradientMatchesTorchAutograd) {
  const Fixture f;
  TrainWeights tw(load_config(f.dir));
  load_train_weights(tw, f.dir);
  const Batch b = f.batch();
  // The layout dsv2 grpo builds equals the fixture's (built independently in Python).
  const Batch built = completion_batch(f.j["prompt"].get<std::vector<int32_t>>(),
                                       f.j["completions"].get<std::vector<std::vector<int32_t>>>(), f.j["pad"]);
  EXPECT_EQ(built.seq_len, b.seq_len);
  EXPECT_EQ(built.inputs, b.inputs);
  EXPECT_EQ(built.targets, b.targets);
  const std::vector<double> advantages = group_advantages(f.j["rewards"].get<std::vector<double>>(), f.G);
  for (int64_t i = 0; i < f.G; ++i) EXPECT_NEAR(advantages[i], f.j["advantages"][i].get<double>(), 1e-5);

  const GrpoObjectiveOptions o{f.j["beta"].get<double>(), f.j["eps"].get<double>()};
  const std::vector<GrpoToken> terms = f.terms(advantages);
  const StepResult r = run_objective(tw, b, terms, o);
  double J = 0.0;
  int64_t clipped = 0;
  for (size_t row = 0; row < terms.size(); ++row) {
    if (b.targets[row] < 0) continue;
    EXPECT_NEAR(r.token_logprobs[row], f.j["logp"][row].get<double>(), 1e-5) << row;
    J += grpo_token_value(terms[row], r.token_logprobs[row], o);
    clipped += grpo_clipped(terms[row], r.token_logprobs[row], o);
  }
  EXPECT_NEAR(J, f.j["J"].get<double>(), 1e-6);
  EXPECT_EQ(clipped, f.j["clipped"].get<int64_t>());  // both branches of the min are exercised
  SafetensorsFile expected(f.dir + "/grads.safetensors");
  int checked = 0;
  for (const auto& info : tw.infos()) {
    if (!info.trained) continue;
    const TensorInfo* t = expected.find(info.name);
    ASSERT_TRUE(t && t->numel() == info.size) << info.name;
    EXPECT_TRUE(test::gradient_near(info.name, tw.grads.data() + info.offset, reinterpret_cast<const float*>(t->data), info.size));
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

// ∂(term)/∂log π against a central difference of the term, on both sides of the clip range.
TEST(GrpoObjective, CoefficientIsTheTermsDerivative) {
  const GrpoObjectiveOptions o{0.04, 0.2};
  for (float advantage : {1.3f, -0.7f})
    for (float shift : {-0.5f, -0.1f, 0.05f, 0.4f}) {  // log ratio: clipped below, inside, inside, clipped above
      const GrpoToken t{0.25f, advantage, -2.3f, -2.0f};
      const float logp = t.old_logp + shift;
      const double h = 1e-3;
      const double numeric = (grpo_token_value(t, logp + h, o) - grpo_token_value(t, logp - h, o)) / (2 * h);
      EXPECT_NEAR(grpo_coefficient(t, logp, o), numeric, 1e-4) << advantage << " " << shift;
    }
}

TEST(GrpoObjective, EqualRewardsGiveNoPolicyGradient) {
  const Fixture f;
  TrainWeights tw(load_config(f.dir));
  load_train_weights(tw, f.dir);
  const std::vector<double> advantages = group_advantages(std::vector<double>(f.G, 0.7), f.G);
  for (double a : advantages) EXPECT_EQ(a, 0.0);
  run_objective(tw, f.batch(), f.terms(advantages), GrpoObjectiveOptions{0.0, 0.2});
  for (float g : tw.grads) ASSERT_EQ(g, 0.0f);
  // With distinct rewards the same call moves the policy (the test can fail).
  run_objective(tw, f.batch(), f.terms(group_advantages(f.j["rewards"].get<std::vector<double>>(), f.G)),
                GrpoObjectiveOptions{0.0, 0.2});
  double norm = 0.0;
  for (float g : tw.grads) norm += double(g) * g;
  EXPECT_GT(norm, 0.0);
}

// The reference is the frozen copy dsv2 grpo keeps: while the policy equals
// it, D and ∂D vanish exactly; once the policy moves, neither does.
TEST(GrpoObjective, KlTermVanishesWhenPolicyIsReference) {
  const Fixture f;
  const Config config = load_config(f.dir);
  TrainWeights policy(config), reference(config);
  load_train_weights(policy, f.dir);
  load_train_weights(reference, f.dir);
  const Batch b = f.batch();
  TrainingModel reference_model(reference, MoeTrainingOptions{});
  const TokenObjective record_only = [](int64_t, float) { return 0.0f; };
  reference_model.set_token_objective(&record_only);
  const std::vector<float> ref = reference_model.run(b, true, false).token_logprobs;
  const GrpoObjectiveOptions o{0.04, 0.2};
  auto kl_run = [&](double& kl) {
    std::vector<GrpoToken> terms = f.terms(std::vector<double>(f.G, 0.0));  // KL term alone
    for (size_t row = 0; row < terms.size(); ++row) terms[row].ref_logp = ref[row];
    const StepResult r = run_objective(policy, b, terms, o);
    kl = 0.0;
    for (size_t row = 0; row < terms.size(); ++row)
      if (b.targets[row] >= 0) kl += grpo_kl(ref[row], r.token_logprobs[row]);
  };
  double kl = 1.0;
  kl_run(kl);
  EXPECT_EQ(kl, 0.0);
  for (float g : policy.grads) ASSERT_EQ(g, 0.0f);
  policy.value("model.norm.weight")[0] += 0.5f;
  kl_run(kl);
  EXPECT_GT(kl, 0.0);
  double norm = 0.0;
  for (float g : policy.grads) norm += double(g) * g;
  EXPECT_GT(norm, 0.0);
}

// The sampler reads the training weights in place: the same logits as the
// model loaded from its directory, and it follows an update.
TEST(GrpoSampling, ModelOverTrainingWeightsSeesUpdates) {
  const std::string dir = test::fixture("grpo/group");
  Model loaded(dir);
  TrainWeights tw(loaded.config());
  load_train_weights(tw, dir);
  Model view(loaded.config(), tw.w());
  const std::vector<int32_t> ids = {5, 9, 11, 40, 2};
  const int64_t V = loaded.config().vocab_size;
  std::vector<float> a(V), b(V), c(V);
  LatentCache ca(loaded.config(), 16), cb(loaded.config(), 16), cc(loaded.config(), 16);
  loaded.forward(ids.data(), 5, ca, AttentionPath::kAbsorbed, a.data(), true);
  view.forward(ids.data(), 5, cb, AttentionPath::kAbsorbed, b.data(), true);
  for (int64_t v = 0; v < V; ++v) EXPECT_NEAR(a[v], b[v], 1e-4);
  for (float& x : tw.values) x *= 1.1f;  // an "update"
  view.forward(ids.data(), 5, cc, AttentionPath::kAbsorbed, c.data(), true);
  double moved = 0.0;
  for (int64_t v = 0; v < V; ++v) moved = std::max(moved, std::fabs(double(c[v]) - b[v]));
  EXPECT_GT(moved, 1e-3);
}

// Batched group sampling (a prompt's cache copied to its group) decodes what
// generate() decodes alone: greedy, every completion equals it.
TEST(GrpoSampling, GroupsDecodeAsGenerateAlone) {
  Model model(test::fixture("grpo/group"));
  const std::vector<std::vector<int32_t>> prompts = {{5, 9, 11, 40}, {7, 8}, {30, 31, 32, 33, 34, 35}};
  RolloutOptions o;
  o.group = 3;
  o.max_new_tokens = 9;
  o.sampling.temperature = 0.0f;
  o.stop_ids = {1};
  RolloutStats stats;
  const auto out = sample_completions(model, prompts, o, &stats);
  ASSERT_EQ(out.size(), 3u);
  int64_t sampled = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    LatentCache cache(model.config(), 32);
    GenerationOptions g;
    g.max_tokens = 9;
    g.sampling.temperature = 0.0f;
    g.stop_ids = {1};
    const auto alone = generate(model, cache, prompts[p], 0, g, [](int32_t) { return true; });
    for (const Completion& c : out[p]) {
      EXPECT_EQ(c.tokens, alone) << "prompt " << p;
      EXPECT_EQ(c.stopped, alone.back() == 1);
      sampled += static_cast<int64_t>(c.tokens.size());
    }
  }
  EXPECT_EQ(stats.sampled_tokens, sampled);
  EXPECT_EQ(stats.prompt_tokens, 12);  // each prompt prefilled once
}

RlPrompt prompt_with(const nlohmann::json& fields) {
  RlPrompt p;
  p.fields = fields;
  p.text = "q";
  return p;
}

TEST(GrpoRewards, ExactAnswerAndFormat) {
  EXPECT_EQ(extract_answer("so 3 + 4 = 7, and then 12"), "12");
  EXPECT_EQ(extract_answer("Answer: 1,234.\nthanks 5"), "1,234.");
  EXPECT_EQ(extract_answer("答案：北京"), "北京");
  EXPECT_FALSE(extract_answer("no digits here"));
  EXPECT_TRUE(answers_match("1,234.", 1234));
  EXPECT_TRUE(answers_match("7.0", "7"));
  EXPECT_TRUE(answers_match("abc.", "abc"));
  EXPECT_FALSE(answers_match("8", "7"));
  const RlPrompt p = prompt_with({{"answer", 7}});
  auto exact = make_builtin_reward("exact-answer");
  EXPECT_EQ(exact->required_field(), "answer");
  EXPECT_EQ(exact->score({{&p, "3 + 4 = 7", true, {}}, {&p, "3 + 4 = 8", true, {}}, {&p, "Answer: 7\nor 9", false, {}}}),
            (std::vector<double>{1.0, 0.0, 1.0}));
  auto format = make_builtin_reward("format");
  EXPECT_EQ(format->score({{&p, "x\nAnswer: 7", true, {}}, {&p, "Answer: 7", false, {}}, {&p, "7", true, {}},
                           {&p, "Answer:", false, {}}}),
            (std::vector<double>{1.0, 0.5, 0.5, 0.0}));
  EXPECT_THROW(make_builtin_reward("length"), Error);
}

std::string error_of(Reward& reward, const std::vector<RewardInput>& inputs) {
  try {
    reward.score(inputs);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GrpoRewards, CommandGetsJsonLinesAndFailuresNameIt) {
  const RlPrompt p = prompt_with({{"answer", "4"}, {"id", 3}});
  const std::vector<RewardInput> two = {{&p, "four", true, {}}, {&p, "4", true, {}}};
  // The command sees the prompt, the completion and the line's other fields.
  auto good = make_command_reward(
      "while read -r line; do case \"$line\" in *'\"completion\":\"4\"'*'\"id\":3'*|*'\"id\":3'*'\"completion\":\"4\"'*) "
      "echo 1;; *'\"prompt\":\"q\"'*) echo -0.5;; *) echo 9;; esac; done");
  EXPECT_EQ(good->score(two), (std::vector<double>{-0.5, 1.0}));
  const std::pair<std::string, std::string> failures[] = {
      {"echo 1; exit 3", "exited with status 3"},
      {"echo 1; echo abc", "line 2 of its output is not a number: \"abc\""},
      {"echo 1", "printed 1 numbers for 2 completions"},
      {"echo 1; echo nan", "not a number"},
  };
  for (const auto& [command, message] : failures) {
    auto reward = make_command_reward(command);
    const std::string error = error_of(*reward, two);
    EXPECT_NE(error.find("reward command `" + command + "`"), std::string::npos) << error;
    EXPECT_NE(error.find(message), std::string::npos) << error;
  }
}

std::string grpo_command(const std::string& prompts, const std::string& out, const std::string& reward) {
  return "grpo -m " + test::fixture("v2_lite") + " --prompts " + prompts + " --out " + out + " " + reward +
         " --group 3 --steps 2 --prompts-per-step 2 --max-new-tokens 6 --lr 1e-3 --threads 2";
}

TEST(GrpoCli, BadInputNamesFileAndLineAndWritesNothing) {
  test::TempDir dir;
  const std::string good = R"({"prompt": "1 + 1 =", "answer": "2"})";
  const std::pair<std::string, std::string> cases[] = {
      {"[1, 2]", "not a JSON object"},
      {"{\"prompt\": ", "not valid JSON"},
      {"{\"text\": \"hi\"}", "neither a \"prompt\" string nor a \"messages\" list"},
      {R"({"prompt": 5})", "\"prompt\" is not a string"},
      {R"({"messages": [{"role": "user"}]})", "message 1 has no string \"content\""},
      {R"({"prompt": ")" + std::string(600, 'x') + R"("})", "longer than the context (256)"},
      {R"({"prompt": "2 + 2 ="})", "no \"answer\" field"},
  };
  for (const auto& [line, message] : cases) {
    const std::string prompts = dir.path("p.jsonl"), out = dir.path("out");
    test::write_bytes(prompts, good + "\n\n" + good + "\n" + line + "\n");
    const auto r = test::run_dsv2(grpo_command(prompts, out, "--reward exact-answer"));
    EXPECT_EQ(r.exit_code, 1) << line;
    EXPECT_NE(r.err.find(prompts + ":4: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out)) << "nothing is written for bad prompts";
  }
  // A reward command that fails in the first step: named, and nothing written.
  test::write_bytes(dir.path("p.jsonl"), good + "\n");
  const auto r = test::run_dsv2(grpo_command(dir.path("p.jsonl"), dir.path("out"), "--reward-cmd 'exit 4'"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("reward command `exit 4` exited with status 4"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.path("out")));
  EXPECT_EQ(test::run_dsv2(grpo_command(dir.path("p.jsonl"), dir.path("out"), "")).exit_code, 2);
}

TEST(GrpoCli, ShortRunWritesMetricsAndALoadableModel) {
  test::TempDir dir;
  const std::string prompts = dir.path("p.jsonl"), out = dir.path("out");
  test::write_bytes(prompts, R"({"prompt": "1 + 1 =", "answer": 2})" "\n"
                             R"({"messages": [{"role": "user", "content": "2 + 2?"}], "answer": "4"})" "\n");
  // A reward that varies within a group: the length of the JSON line (its completion's) mod 7.
  const auto r = test::run_dsv2(grpo_command(
      prompts, out, "--iterations 2 --reward-cmd \"awk '{print length(\\$0) % 7}'\""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = test::logged_lines(out);
  ASSERT_EQ(lines.size(), 2u);
  for (const char* field : {"reward_mean", "reward_std", "kl", "clip_fraction", "completion_tokens",
                            "sampled_tokens_per_s", "seconds"})
    EXPECT_TRUE(lines[0].contains(field)) << field;
  EXPECT_EQ(lines[0]["completion_tokens"].get<int64_t>() > 0, true);
  EXPECT_GT(lines[0]["reward_std"].get<double>(), 0.0);
  EXPECT_GT(lines[1]["kl"].get<double>(), 0.0);  // the policy moved away from the reference
  Model trained(out);
  EXPECT_EQ(trained.config().vocab_size, load_config(test::fixture("v2_lite")).vocab_size);
  EXPECT_TRUE(fs::exists(out + "/tokenizer.json"));
}

// dsv2 eval --answers: the greedy completions are dsv2 generate's, the reward
// is the command's, and the tallies are per "kind" field and in total.
TEST(EvalAnswers, GreedyCompletionsScoredPerKind) {
  test::TempDir dir;
  const std::string prompts = dir.path("p.jsonl"), completions = dir.path("c.jsonl");
  const std::vector<std::pair<std::string, std::string>> items = {
      {"The old sailor", "a"}, {"Once upon a time", "b"}, {"1 + 1 =", "a"}, {"In the morning", "a"}, {"She said", "b"}};
  std::string lines;
  for (const auto& [prompt, kind] : items)
    lines += nlohmann::json({{"prompt", prompt}, {"kind", kind}}).dump() + "\n";
  test::write_bytes(prompts, lines);
  // Reward 1 for kind "a", 0 for kind "b", read from the JSON line the command gets.
  test::write_bytes(dir.path("reward.sh"), "awk '{ print ($0 ~ /\"kind\": *\"a\"/) ? 1 : 0 }'\n");
  const auto r = test::run_dsv2("eval -m " + test::fixture("v2_lite") + " --answers " + prompts +
                                " --max-new-tokens 6 --batch 2 --json --threads 2 --completions " + completions +
                                " --reward-cmd 'sh " + dir.path("reward.sh") + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, nlohmann::json> tallies;
  for (size_t at = 0, nl; (nl = r.out.find('\n', at)) != std::string::npos; at = nl + 1) {
    const auto j = nlohmann::json::parse(r.out.substr(at, nl - at));
    tallies[j["kind"].get<std::string>() + "@" + j["file"].get<std::string>()] = j;
  }
  ASSERT_EQ(tallies.size(), 3u) << r.out;
  EXPECT_EQ(tallies["a@" + prompts]["items"], 3);
  EXPECT_EQ(tallies["a@" + prompts]["accuracy"], 1.0);
  EXPECT_EQ(tallies["b@" + prompts]["items"], 2);
  EXPECT_EQ(tallies["b@" + prompts]["reward_mean"], 0.0);
  EXPECT_EQ(tallies["all@total"]["items"], 5);
  EXPECT_DOUBLE_EQ(tallies["all@total"]["accuracy"].get<double>(), 0.6);
  // Each completion is what greedy dsv2 generate writes for its prompt (as ids).
  const auto logged = test::json_lines(completions);
  ASSERT_EQ(logged.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const auto ids = test::run_dsv2("tokenize -m " + test::fixture("v2_lite") + " --text '" + items[i].first + "'");
    ASSERT_EQ(ids.exit_code, 0) << ids.err;
    const auto g = test::run_dsv2("generate -m " + test::fixture("v2_lite") + " --ids '" + ids.out +
                                  "' -n 6 --temperature 0 --threads 2");
    ASSERT_EQ(g.exit_code, 0) << g.err;
    std::string want;
    for (int32_t t : logged[i]["tokens"].get<std::vector<int32_t>>()) want += (want.empty() ? "" : " ") + std::to_string(t);
    EXPECT_EQ(want + "\n", g.out) << items[i].first;
    EXPECT_EQ(logged[i]["kind"], items[i].second);
  }
  // Bad input and usage.
  test::write_bytes(prompts, lines + "[1]\n");
  const auto bad = test::run_dsv2("eval -m " + test::fixture("v2_lite") + " --answers " + prompts + " --reward format");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find(prompts + ":6: not a JSON object"), std::string::npos) << bad.err;
  EXPECT_EQ(test::run_dsv2("eval -m " + test::fixture("v2_lite") + " --answers " + prompts + " --samples 2").exit_code, 2);
  EXPECT_EQ(test::run_dsv2("eval -m " + test::fixture("v2_lite") + " --answers " + prompts + " --reward nope").exit_code, 2);
}

// The shipped chat model (models/dsv2-mini-chat, MODEL_CARD.md): it loads, renders
// its chat template, answers counting questions in the short form GRPO left it
// with and ends its turn; its card's finding (the most frequent answer, 0 for a
// Chinese counting question) holds on questions whose answer is 0.
TEST(ShippedChatModel, AnswersCountingQuestionsAsItsCardSays) {
  test::TempDir dir;
  const std::string prompts = dir.path("count.jsonl"), completions = dir.path("c.jsonl");
  test::write_bytes(prompts,
                    R"({"messages": [{"role": "user", "content": "“春鸟云鸟水”里有几个“江”字？\n最后一行写“答案：”和答案。"}], "answer": 0, "kind": "count"})" "\n"
                    R"({"messages": [{"role": "user", "content": "“柳鸟鸟云月风月”里有几个“水”字？\n最后一行写“答案：”和答案。"}], "answer": 0, "kind": "count"})" "\n"
                    R"({"messages": [{"role": "user", "content": "“风风山月风月”里有几个“水”字？\n最后一行写“答案：”和答案。"}], "answer": 0, "kind": "count"})" "\n"
                    R"({"messages": [{"role": "user", "content": "How many times does the letter 't' appear in \"forest cloud cloud silver window\"?\nEnd with a line \"Answer: \" and the answer."}], "answer": 1, "kind": "count"})" "\n");
  const auto r = test::run_dsv2("eval -m " + test::fixture("../../models/dsv2-mini-chat") + " --answers " + prompts +
                                " --max-new-tokens 32 --json --threads 2 --completions " + completions);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto logged = test::json_lines(completions);
  ASSERT_EQ(logged.size(), 4u);
  int right = 0;
  for (const auto& line : logged) {
    EXPECT_TRUE(line["stopped"].get<bool>()) << line["completion"];
    EXPECT_LE(line["tokens"].size(), 6u) << line["completion"];
    right += line["reward"].get<double>() == 1.0;
  }
  EXPECT_GE(right, 3) << r.out;
}

}  // namespace
}  // namespace dsv2
