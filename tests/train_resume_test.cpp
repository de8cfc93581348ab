// dsv2 train end to end: a run killed with SIGKILL at an arbitrary moment and
// resumed must produce the same loss curve and weights, bit for bit, as an
// uninterrupted run (same thread count). Also: the trained directory loads for
// inference and evaluation.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "test_util.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

std::string train_command(const std::string& out, bool resume) {
  const std::string corpus = std::string(DSV2_CORPUS_DIR);
  return std::string(DSV2_BINARY) + " train --preset tiny --tokenizer " + test::fixture("v2_lite") + " --data " + corpus +
         "/en/alice_in_wonderland.txt --data " + corpus + "/zh/lunyu.txt --out " + out +
         " --steps 60 --seq-len 32 --batch-tokens 256 --lr 3e-3 --eval-every 8 --checkpoint-every 7 --threads 2"
         " --alpha1 0.003 --alpha2 0.05 --alpha3 0.02 --devices 4 --device-limit 2 --capacity-factor 1.0" +
         (resume ? " --resume" : "");
}

std::vector<double> losses(const std::string& out) {
  std::vector<double> v;
  std::ifstream in(out + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) v.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return v;
}

TEST(TrainResume, SigkillAnywhereThenResumeIsBitIdentical) {
  if (!fs::exists(std::string(DSV2_CORPUS_DIR) + "/en/alice_in_wonderland.txt")) GTEST_SKIP() << "shared corpus not present";
  test::TempDir dir;
  const std::string whole = dir.path("whole");
  ASSERT_EQ(std::system((train_command(whole, false) + " 2>/dev/null >/dev/null").c_str()), 0);
  const auto expected = losses(whole);
  ASSERT_EQ(expected.size(), 60u);
  int interrupted = 0;

  std::mt19937 rng(12345);
  for (int round = 0; round < 3; ++round) {
    const std::string out = dir.path("killed" + std::to_string(round));
    const pid_t pid = fork();
    if (pid == 0) {
      execl("/bin/sh", "sh", "-c", ("exec " + train_command(out, false) + " 2>/dev/null >/dev/null").c_str(), nullptr);
      _exit(127);
    }
    // Wait for the first checkpoint, then kill at a random moment after it.
    for (int i = 0; i < 6000 && !fs::exists(out + "/latest"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 600));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    interrupted += WIFSIGNALED(status) && losses(out).size() < expected.size();
    ASSERT_EQ(std::system((train_command(out, true) + " 2>/dev/null >/dev/null").c_str()), 0) << "resume failed, round " << round;
    EXPECT_EQ(losses(out), expected) << "round " << round;
    EXPECT_EQ(test::read_bytes(out + "/model.safetensors"), test::read_bytes(whole + "/model.safetensors"));
  }

  EXPECT_GE(interrupted, 2) << "the kills should land mid-run";

  // The result is a complete model directory.
  const auto gen = test::run_dsv2("generate -m " + whole + " --prompt 'Alice' -n 5 --temperature 0 --ignore-eos");
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
  const auto eval = test::run_dsv2("eval -m " + whole + " --json --max-tokens 200 " + std::string(DSV2_CORPUS_DIR) + "/en/alice_in_wonderland.txt");
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const auto j = nlohmann::json::parse(eval.out);
  EXPECT_EQ(j["tokens"], 200);
  EXPECT_GT(j["bits_per_byte"].get<double>(), 0.5);
  EXPECT_LT(j["loss"].get<double>(), std::log(512.0) + 0.5);  // learnt something, or at least not worse than uniform
}

TEST(TrainCli, RejectsBadOptions) {
  test::TempDir dir;
  const std::string base = "train --preset tiny --tokenizer " + test::fixture("v2_lite") + " --out " + dir.path("o");
  EXPECT_EQ(test::run_dsv2(base + " --data /nonexistent.txt").exit_code, 1);
  EXPECT_EQ(test::run_dsv2(base + " --data x --devices 3").exit_code, 2);
  EXPECT_EQ(test::run_dsv2(base + " --data x --bias-update 0.001").exit_code, 2);
  EXPECT_EQ(test::run_dsv2("train --preset huge --tokenizer " + test::fixture("v2_lite") + " --data x --out y").exit_code, 1);
}

}  // namespace
}  // namespace dsv2
