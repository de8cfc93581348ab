// dsv2 train end to end: a run killed with SIGKILL at an arbitrary moment and
// resumed must produce the same loss curve and weights, bit for bit, as an
// uninterrupted run (same thread count). Also: the trained directory loads for
// inference and evaluation.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <iterator>
#include <random>
#include <thread>

#include "test_util.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

// Text the tests write themselves, so that they run without the shared corpus.
std::string write_training_text(const test::TempDir& dir) {
  const std::string path = dir.path("text.txt");
  test::write_bytes(path, test::generated_text(200000));
  return path;
}

std::string train_command(const std::string& data, const std::string& out, bool resume) {
  return std::string(DSV2_BINARY) + " train --preset tiny --tokenizer " + test::fixture("v2_lite") + " --data " + data + " --out " + out +
         " --steps 60 --seq-len 64 --batch-tokens 2048 --lr 3e-3 --eval-every 8 --checkpoint-every 7 --threads 2"
         " --alpha1 0.003 --alpha2 0.05 --alpha3 0.02 --devices 4 --device-limit 2 --capacity-factor 1.0" +
         (resume ? " --resume" : "");
}

std::vector<double> losses(const std::string& out) { return test::logged_losses(out); }

// Complete lines in the metrics log so far (safe to call while the run writes it).
size_t logged_steps(const std::string& out) {
  std::ifstream in(out + "/metrics.jsonl");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

int64_t median_step_microseconds(const std::string& out) {
  std::vector<double> seconds;
  std::ifstream in(out + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) seconds.push_back(nlohmann::json::parse(line)["seconds"]["step"].get<double>());
  if (seconds.empty()) return 0;
  std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
  return static_cast<int64_t>(seconds[seconds.size() / 2] * 1e6);
}

TEST(TrainResume, SigkillAnywhereThenResumeIsBitIdentical) {
  test::TempDir dir;
  const std::string data = write_training_text(dir);
  const std::string whole = dir.path("whole");
  ASSERT_EQ(std::system((train_command(data, whole, false) + " 2>/dev/null >/dev/null").c_str()), 0);
  const auto expected = losses(whole);
  ASSERT_EQ(expected.size(), 60u);
  // One step's time on this machine, from the run's own log: the median, so that
  // neither start-up (tokenizing the text can outlast all 60 steps) nor a slow
  // first step stretches the random delay below past the end of the run.
  const auto step_us = median_step_microseconds(whole);
  // Steps of ~20 ms (seq-len 64 × 32 sequences) leave the kill timing below room on a
  // loaded machine; a round whose kill still arrives after the last step counts as a
  // plain rerun, and up to three more rounds make up for it.
  int interrupted = 0;
  int round = 0;
  std::mt19937 rng(12345);
  for (; round < 6 && interrupted < 3; ++round) {
    const std::string out = dir.path("killed" + std::to_string(round));
    const pid_t pid = fork();
    if (pid == 0) {
      execl("/bin/sh", "sh", "-c", ("exec " + train_command(data, out, false) + " 2>/dev/null >/dev/null").c_str(), nullptr);
      _exit(127);
    }
    // Wait until a random step after the first checkpoint has logged its loss, then
    // kill at a random moment within the next two steps' time. Waiting on the log,
    // not on the clock, keeps the kill mid-run however fast the machine is.
    const size_t kill_after = 8 + rng() % 40;
    for (int i = 0; i < 60000 && logged_steps(out) < kill_after; ++i) std::this_thread::sleep_for(std::chrono::microseconds(500));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % (2 * step_us + 1)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    interrupted += WIFSIGNALED(status) && losses(out).size() < expected.size();
    ASSERT_EQ(std::system((train_command(data, out, true) + " 2>/dev/null >/dev/null").c_str()), 0) << "resume failed, round " << round;
    EXPECT_EQ(losses(out), expected) << "round " << round;
    EXPECT_EQ(test::read_bytes(out + "/model.safetensors"), test::read_bytes(whole + "/model.safetensors"));
  }

  EXPECT_EQ(interrupted, 3) << "the kills should land mid-run (" << round << " rounds)";

  // The result is a complete model directory.
  const auto gen = test::run_dsv2("generate -m " + whole + " --prompt 'The old sailor' -n 5 --temperature 0 --ignore-eos");
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
  // So is its latest checkpoint (the tokenizer copied in with the weights).
  std::string latest = test::read_bytes(whole + "/latest");
  latest.erase(latest.find_last_not_of(" \n") + 1);
  const auto from_checkpoint =
      test::run_dsv2("generate -m " + whole + "/" + latest + " --prompt 'The old sailor' -n 5 --temperature 0 --ignore-eos");
  EXPECT_EQ(from_checkpoint.exit_code, 0) << from_checkpoint.err;
  const auto eval = test::run_dsv2("eval -m " + whole + " --json --max-tokens 200 " + data);
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const auto j = nlohmann::json::parse(eval.out);
  EXPECT_EQ(j["tokens"], 200);
  EXPECT_GT(j["bits_per_byte"].get<double>(), 0.5);
  EXPECT_LT(j["loss"].get<double>(), std::log(512.0) + 0.5);  // learnt something, or at least not worse than uniform
}

TEST(TrainMetrics, EveryStepLogsLossesBalanceAndPhaseTimes) {
  test::TempDir dir;
  const std::string out = dir.path("m");
  const auto run = test::run_dsv2("train --preset tiny --tokenizer " + test::fixture("v2_lite") + " --data " +
                                  write_training_text(dir) + " --out " + out +
                                  " --steps 3 --seq-len 32 --batch-tokens 256 --eval-every 3 --threads 2");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::ifstream in(out + "/metrics.jsonl");
  int steps = 0;
  for (std::string line; std::getline(in, line); ++steps) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["step"], steps);
    for (const char* key : {"loss", "balance_loss", "expert_balance", "device_balance", "comm_balance", "sequence_balance",
                            "max_violation", "dropped_share", "lr", "grad_norm", "batch_tokens", "tokens", "tokens_per_s",
                            "ranks", "alltoall_bytes", "allreduce_bytes", "rank_peak_rss_bytes"})
      EXPECT_TRUE(j.contains(key)) << key;
    const auto& t = j["seconds"];
    double phases = 0.0;
    for (const char* key : {"attention_forward", "attention_backward", "ffn_forward", "ffn_backward", "lm_head", "optimizer"}) {
      ASSERT_TRUE(t.contains(key)) << key;
      EXPECT_GT(t[key].get<double>(), 0.0) << key;
      phases += t[key].get<double>();
    }
    EXPECT_LE(phases, t["step"].get<double>()) << "the phases are parts of the step";
    EXPECT_EQ(j.contains("val_loss"), steps == 2) << "validation every 3rd step";
  }
  EXPECT_EQ(steps, 3);
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
