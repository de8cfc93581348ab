// The dsv2 binary end to end: exit codes, one-line errors, the logits file
// format, and generate against transformers' greedy continuation.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace dsv2 {
namespace {

using test::fixture;
using test::run_dsv2;

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

nlohmann::json reference(const std::string& name) {
  return nlohmann::json::parse(test::read_bytes(fixture(name + "/reference.json")));
}

void expect_one_line_error(const test::CommandResult& r, int code, const std::string& needle) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
}

TEST(Cli, HelpAndUnknownCommand) {
  EXPECT_EQ(run_dsv2("--help").exit_code, 0);
  for (const char* command : {"info", "logits", "generate"}) {
    const auto r = run_dsv2(std::string(command) + " --help");
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_NE(r.out.find("usage: dsv2 " + std::string(command)), std::string::npos) << r.out;
  }
  expect_one_line_error(run_dsv2("frobnicate"), 2, "unknown command 'frobnicate'");
  expect_one_line_error(run_dsv2("logits -m x --bogus 1"), 2, "unknown option '--bogus'");
  expect_one_line_error(run_dsv2("logits -m x -o y"), 2, "--ids");
  expect_one_line_error(run_dsv2("generate -m x"), 2, "--prompt");
}

TEST(Cli, InfoReportsArchitectureAndCache) {
  const auto r = run_dsv2("info -m " + fixture("v3_fp8_yarn"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* needle : {"deepseek_v3", "MLA, 4 heads", "q_lora_rank 48", "noaux_tc", "F8_E4M3", "YaRN factor 40",
                             "ignored tensors", "MLA latent (32 + 8) x 3 layers", "MHA would need"})
    EXPECT_NE(r.out.find(needle), std::string::npos) << needle << "\n" << r.out;
}

TEST(Cli, LogitsFileMatchesTransformers) {
  const auto ref = reference("v2_yarn_bf16");
  const auto ids = ref["ids"].get<std::vector<int32_t>>();
  test::TempDir dir;
  for (const char* attn : {"naive", "absorbed"}) {
    const std::string out = dir.path(std::string("logits_") + attn);
    const auto r = run_dsv2("logits -m " + fixture("v2_yarn_bf16") + " --ids \"" + ids_text(ids) + "\" -o " + out +
                            " --prefill " + std::to_string(ref["prefill"].get<int>()) + " --attn " + attn +
                            " --float32-activations");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto got = test::read_f32(out);
    const auto expected = test::read_f32(fixture("v2_yarn_bf16/decode_logits.f32"));
    ASSERT_EQ(got.size(), ids.size() * 128);
    const auto diff = test::compare(got, expected);
    EXPECT_LE(diff.max_abs_diff, 1e-4f * diff.max_abs_ref) << attn;
  }
}

TEST(Cli, GenerateGreedyMatchesTransformers) {
  const auto ref = reference("v2_lite");
  const auto greedy = ref["greedy"].get<std::vector<int32_t>>();
  const auto r = run_dsv2("generate -m " + fixture("v2_lite") + " --ids \"" + ids_text(ref["ids"]) + "\" -n " +
                          std::to_string(greedy.size()) + " --temperature 0 --ignore-eos");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ids_text(greedy) + "\n");
}

TEST(Cli, GenerateIsDeterministicForASeed) {
  const std::string args = "generate -m " + fixture("v3_sharded") + " --ids \"5 6 7\" -n 12 --temperature 0.9 "
                           "--top-p 0.9 --top-k 20 --seed 11 --ignore-eos";
  const auto a = run_dsv2(args), b = run_dsv2(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
}

// The sampling flags of generate (and chat, which shares them): each reaches
// the sampler, and a value out of range is a one-line usage error naming it.
TEST(Cli, SamplingFlags) {
  const std::string base = "generate -m " + fixture("v2_lite") + " --ids \"5 6 7\" -n 6 --ignore-eos --seed 4 ";
  // +100 forces token 9 whatever the temperature; -100 on the greedy choice makes greedy pick another.
  const auto forced = run_dsv2(base + "--temperature 1.5 --logit-bias 9=100");
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(forced.out, "9 9 9 9 9 9\n");
  const auto greedy = run_dsv2(base + "--temperature 0 -n 1");
  ASSERT_EQ(greedy.exit_code, 0) << greedy.err;
  const std::string first = greedy.out.substr(0, greedy.out.size() - 1);
  const auto banned = run_dsv2(base + "--temperature 0 -n 1 --logit-bias 1=0," + first + "=-100 --logit-bias 2=3");
  ASSERT_EQ(banned.exit_code, 0) << banned.err;
  EXPECT_NE(banned.out, greedy.out);
  // Penalties and min-p change a seeded run; with their neutral values they change nothing.
  const auto plain = run_dsv2(base + "-n 24 --temperature 1");
  const auto neutral = run_dsv2(base + "-n 24 --temperature 1 --repeat-penalty 1 --frequency-penalty 0 "
                                       "--presence-penalty 0 --min-p 0");
  const auto penalised = run_dsv2(base + "-n 24 --temperature 1 --repeat-penalty 1.5 --repeat-last-n -1 "
                                         "--frequency-penalty 1 --presence-penalty 1 --min-p 0.05");
  ASSERT_EQ(penalised.exit_code, 0) << penalised.err;
  EXPECT_EQ(plain.out, neutral.out);
  EXPECT_NE(plain.out, penalised.out);
  for (const auto& [flags, needle] : std::vector<std::pair<std::string, std::string>>{
           {"--min-p 1.5", "option --min-p: must be in [0, 1]"},
           {"--frequency-penalty 3", "option --frequency-penalty: must be in [-2, 2]"},
           {"--presence-penalty -2.5", "option --presence-penalty: must be in [-2, 2]"},
           {"--repeat-penalty 0", "option --repeat-penalty: must be > 0"},
           {"--repeat-last-n -2", "option --repeat-last-n: must be >= -1"},
           {"--top-k -1", "option --top-k"},
           {"--temperature -1", "option --temperature"},
           {"--logit-bias 5", "option --logit-bias: '5' is not TOKEN_ID=BIAS"},
           {"--logit-bias 5=x", "option --logit-bias: '5=x'"},
           {"--logit-bias 5=101", "option --logit-bias: the bias of token 5 must be in [-100, 100]"},
           {"--logit-bias 999=1", "option --logit-bias: token 999 is not in the vocabulary (ids 0..511)"}})
    expect_one_line_error(run_dsv2(base + flags), 2, needle);
}

// --quantize and --cache-type reach the model: logits stay near transformers'
// (q8 weights and a q8 cache move this tiny random model's logits by a few
// percent of their range; a q4 cache moves them ~25%, bf16 weights ~1%), they
// differ from the exact run, and bad values are usage errors.
TEST(Cli, QuantizeAtLoadAndQuantizedCache) {
  test::TempDir dir;
  const auto ref = reference("v2_lite");
  const std::string base = "logits -m " + fixture("v2_lite") + " --ids \"" + ids_text(ref["ids"]) + "\" -o ";
  const auto r = run_dsv2(base + dir.path("q") + " --quantize q8 --cache-type q8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto expected = test::read_f32(fixture("v2_lite/prefill_logits.f32"));
  const auto diff = test::compare(test::read_f32(dir.path("q")), expected);
  EXPECT_GT(diff.max_abs_diff, 1e-4f * diff.max_abs_ref);  // really quantized
  EXPECT_LT(diff.max_abs_diff, 0.1f * diff.max_abs_ref);
  expect_one_line_error(run_dsv2(base + dir.path("x") + " --cache-type q6"), 2, "--cache-type");
  expect_one_line_error(run_dsv2(base + dir.path("x") + " --quantize int3"), 2, "--quantize");
}

TEST(Cli, BadInputsFailWithOneLine) {
  test::TempDir dir;
  test::copy_model("v2_lite", dir.path("m"));
  std::filesystem::resize_file(dir.path("m/model.safetensors"), 5);
  expect_one_line_error(run_dsv2("logits -m " + dir.path("m") + " --ids \"1 2\" -o " + dir.path("x")), 1, "truncated");
  expect_one_line_error(run_dsv2("info -m " + dir.path("nowhere")), 1, "nowhere");
  expect_one_line_error(run_dsv2("logits -m " + fixture("v2_lite") + " --ids \"1 999\" -o " + dir.path("x")), 1,
                        "token id 999");
  expect_one_line_error(run_dsv2("logits -m " + fixture("v2_lite") + " --ids \"1 x\" -o " + dir.path("x")), 2, "'x'");
  expect_one_line_error(run_dsv2("logits -m " + fixture("v2_lite") + " --ids \"1 2\" --prefill 3 -o " + dir.path("x")),
                        2, "--prefill");
  expect_one_line_error(run_dsv2("generate -m " + fixture("v2_lite") + " --ids 1 --top-p 2"), 2, "--top-p");
  EXPECT_FALSE(std::filesystem::exists(dir.path("x")));  // nothing half-written
}

TEST(Cli, TokenizeAndDetokenize) {
  const std::string tok = "--tokenizer " + test::fixture("tokenizers/deepseek_v2");
  const auto ids = test::run_dsv2("tokenize " + tok + " --text 'Hello, 世界! 123'");
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  // From tokenizers 0.23.3 on the same tokenizer.json: BOS, then the text.
  EXPECT_EQ(ids.out, "0 47 857 86 19 228 972 3786 8 228 24 25 26\n");
  const auto text = test::run_dsv2("detokenize " + tok + " --ids '47 857 86 19 228 972 3786 8 228 24 25 26'");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out, "Hello, 世界! 123\n");
  EXPECT_EQ(test::run_dsv2("tokenize " + tok + " --special --text '<｜User｜>hi'").out, "0 3 79 80\n");
  EXPECT_EQ(test::run_dsv2("tokenize " + tok + " --no-bos --text hi").out, "79 80\n");
  test::TempDir dir;
  test::write_bytes(dir.path("in.txt"), "Hello, 世界! 123");
  EXPECT_EQ(test::run_dsv2("tokenize " + tok + " --file " + dir.path("in.txt")).out, ids.out);
}

TEST(Cli, TokenizerErrors) {
  test::TempDir dir;
  test::write_bytes(dir.path("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}");
  expect_one_line_error(test::run_dsv2("tokenize --tokenizer " + dir.path() + " --text hi"), 1, "model.merges[0]");
  expect_one_line_error(test::run_dsv2("tokenize --tokenizer " + dir.path("missing.json") + " --text hi"), 1, "missing.json");
  expect_one_line_error(test::run_dsv2("detokenize --tokenizer " + test::fixture("tokenizers/deepseek_v2") + " --ids 99999"),
                        1, "token id 99999");
}

TEST(Cli, GenerateFromATextPrompt) {
  // Greedy text from the tiny random model: deterministic, and the same as
  // generating ids from the encoded prompt and decoding them.
  const std::string model = test::fixture("v2_lite");
  const auto text = test::run_dsv2("generate -m " + model + " --prompt 'Alice was' -n 10 --temperature 0 --ignore-eos");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  const auto prompt = test::run_dsv2("tokenize -m " + model + " --text 'Alice was'");
  const auto ids = test::run_dsv2("generate -m " + model + " --ids '" + prompt.out.substr(0, prompt.out.size() - 1) +
                                  "' -n 10 --temperature 0 --ignore-eos");
  const auto decoded = test::run_dsv2("detokenize -m " + model + " --ids '" + ids.out.substr(0, ids.out.size() - 1) + "'");
  EXPECT_EQ(text.out, decoded.out);
  EXPECT_EQ(text.out, test::run_dsv2("generate -m " + model + " --prompt 'Alice was' -n 10 --temperature 0 --ignore-eos").out);
}

TEST(Cli, EvalHeldOutCoversOnlyTheValidationTail) {
  // 50 lines of 10 bytes; 3% held out: byte 485 falls in line 48, so the tail
  // starts after that line's newline, at byte 490.
  test::TempDir tmp;
  std::string text;
  for (int i = 0; i < 50; ++i) text += "line " + std::to_string(1000 + i) + "\n";
  test::write_bytes(tmp.path("t.txt"), text);
  const std::string model = test::fixture("v2_lite");
  const auto all = run_dsv2("eval -m " + model + " --json " + tmp.path("t.txt"));
  const auto tail = run_dsv2("eval -m " + model + " --json --held-out 0.03 " + tmp.path("t.txt"));
  ASSERT_EQ(all.exit_code, 0) << all.err;
  ASSERT_EQ(tail.exit_code, 0) << tail.err;
  EXPECT_EQ(nlohmann::json::parse(all.out)["bytes"], 500);
  EXPECT_EQ(nlohmann::json::parse(tail.out)["bytes"], 10);
  expect_one_line_error(run_dsv2("eval -m " + model + " --held-out 1.5 " + tmp.path("t.txt")), 2, "--held-out");
}

TEST(Cli, QuantizeWritesALoadableModel) {
  test::TempDir tmp;
  const auto r = run_dsv2("quantize -m " + fixture("v3_fp8_yarn") + " -o " + tmp.path("bf16") + " --type bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto info = run_dsv2("info -m " + tmp.path("bf16"));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("BF16"), std::string::npos) << info.out;
  expect_one_line_error(run_dsv2("quantize -m " + fixture("v2_lite") + " -o " + tmp.path("x") + " --type q9"), 2, "q9");
}

}  // namespace
}  // namespace dsv2
