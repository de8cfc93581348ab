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
                            " --prefill " + std::to_string(ref["prefill"].get<int>()) + " --attn " + attn);
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

}  // namespace
}  // namespace dsv2
