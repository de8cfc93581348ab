// dsv2 train under mpirun (expert parallelism × ZeRO-1) against one process
// that simulates the devices (--devices E) on the same global batch: the same
// per-step losses and decisions (routing, dropping), the same final weights to
// float32 summation order; same-N reruns and SIGKILL + resume bit-identical;
// bad launches end the whole job with one line from rank 0, never a hang.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <tuple>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/safetensors.h"
#include "test_util.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

// The run the equivalence tests compare: device-limited routing (M = 1 of 2
// devices), all three balance losses, token dropping at capacity 1.0.
std::string train_args(const std::string& data, const std::string& out, int64_t steps = 20) {
  return "train --preset tiny --tokenizer " + test::fixture("v2_lite") + " --data " + data + " --out " + out +
         " --steps " + std::to_string(steps) +
         " --seq-len 64 --batch-tokens 2048 --lr 3e-4 --seed 3 --eval-every 10 --checkpoint-every 7 --threads 1"
         " --alpha1 0.003 --alpha2 0.05 --alpha3 0.02 --capacity-factor 1.0";
}

class DistributedTraining : public ::testing::Test {
 protected:
  void SetUp() override { test::write_bytes(data_, test::generated_text(200000)); }
  std::string path(const std::string& name) const { return dir_.path(name); }

  test::TempDir dir_;
  const std::string data_ = dir_.path("text.txt");
};

std::map<std::string, std::vector<float>> weights(const std::string& dir) {
  SafetensorsFile file(dir + "/model.safetensors");
  std::map<std::string, std::vector<float>> out;
  for (const auto& t : file.tensors()) {
    std::vector<float>& v = out[t.name];
    v.resize(t.numel());
    std::memcpy(v.data(), t.data, t.nbytes);
  }
  return out;
}

double relative(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(a), 1e-30); }

// Every tensor of two model directories within 1e-5 relative (L2).
void expect_same_weights(const std::string& one, const std::string& many) {
  const auto wa = weights(one), wb = weights(many);
  EXPECT_EQ(wa.size(), wb.size());
  for (const auto& [name, x] : wa) {
    const auto it = wb.find(name);
    if (it == wb.end() || it->second.size() != x.size()) {
      ADD_FAILURE() << name << " missing or of another size";
      continue;
    }
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < x.size(); ++i) diff += std::pow(x[i] - it->second[i], 2.0), norm += std::pow(x[i], 2.0);
    EXPECT_LE(std::sqrt(diff / std::max(norm, 1e-30)), 1e-5) << name;
  }
}

// The N-rank run against the one-process run: per step, losses within 1e-5
// relative and the same discrete decisions (drops, loads); every tensor within
// 1e-5 relative (L2). Returns the share of assignments dropped over the run.
double expect_equivalent(const std::string& one, const std::string& many) {
  const auto a = test::logged_lines(one), b = test::logged_lines(many);
  EXPECT_EQ(a.size(), 20u);
  EXPECT_EQ(b.size(), a.size());
  double dropped = 0.0;
  for (size_t s = 0; s < std::min(a.size(), b.size()); ++s) {
    for (const char* key : {"loss", "balance_loss", "expert_balance", "device_balance", "comm_balance", "grad_norm"})
      EXPECT_LE(relative(a[s][key].get<double>(), b[s][key].get<double>()), 1e-5) << key << " at step " << s;
    EXPECT_EQ(a[s].contains("mtp_loss"), b[s].contains("mtp_loss"));
    if (a[s].contains("mtp_loss") && b[s].contains("mtp_loss")) {
      EXPECT_LE(relative(a[s]["mtp_loss"].get<double>(), b[s]["mtp_loss"].get<double>()), 1e-5) << "mtp_loss at step " << s;
    }
    EXPECT_EQ(a[s]["dropped_share"], b[s]["dropped_share"]) << "step " << s;
    EXPECT_EQ(a[s]["max_violation"], b[s]["max_violation"]) << "step " << s;
    EXPECT_EQ(a[s]["batch_tokens"], b[s]["batch_tokens"]) << "step " << s;
    if (a[s].contains("val_loss")) {
      EXPECT_LE(relative(a[s]["val_loss"].get<double>(), b[s]["val_loss"].get<double>()), 1e-5);
    }
    dropped += a[s]["dropped_share"].get<double>();
  }
  expect_same_weights(one, many);
  return dropped;
}

TEST_F(DistributedTraining, ExpertParallelOnTwoRanksEqualsTwoSimulatedDevices) {
  ASSERT_EQ(test::run_dsv2(train_args(data_, path("one")) + " --devices 2 --device-limit 1").exit_code, 0);
  const auto run = test::run_mpirun("-np 2 " + test::dsv2_binary() + " " + train_args(data_, path("ep2")) +
                                    " --expert-parallel 2 --device-limit 1");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_GT(expect_equivalent(path("one"), path("ep2")), 0.0) << "token dropping should have dropped something";
  const auto m = test::logged_lines(path("ep2"));
  EXPECT_EQ(m[0]["ranks"], 2);
  EXPECT_GT(m[0]["alltoall_bytes"].get<int64_t>(), 0);
  EXPECT_GT(m[0]["allreduce_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(m[0]["rank_peak_rss_bytes"].size(), 2u);
  EXPECT_EQ(test::logged_lines(path("one"))[0]["alltoall_bytes"], 0);
  // The output is an ordinary model directory for one process.
  const auto gen = test::run_dsv2("generate -m " + path("ep2") + " --prompt 'The old sailor' -n 4 --temperature 0 --ignore-eos");
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
}

TEST_F(DistributedTraining, DataParallelOnTwoRanksEqualsOneProcess) {
  ASSERT_EQ(test::run_dsv2(train_args(data_, path("one"))).exit_code, 0);
  const auto run = test::run_mpirun("-np 2 " + test::dsv2_binary() + " " + train_args(data_, path("dp2")));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  expect_equivalent(path("one"), path("dp2"));
  EXPECT_EQ(test::logged_lines(path("dp2"))[0]["alltoall_bytes"], 0) << "no expert parallelism, no token exchange";
}

TEST_F(DistributedTraining, FourRanksExpertTimesDataParallelEqualTwoSimulatedDevices) {
  ASSERT_EQ(test::run_dsv2(train_args(data_, path("one")) + " --devices 2 --device-limit 1").exit_code, 0);
  const std::string launch = "-np 4 " + test::dsv2_binary() + " " + train_args(data_, path("ep2dp2")) + " --expert-parallel 2 --device-limit 1";
  const auto run = test::run_mpirun(launch);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_GT(expect_equivalent(path("one"), path("ep2dp2")), 0.0);
  // The same job again: the same bits.
  const auto again = test::run_mpirun("-np 4 " + test::dsv2_binary() + " " + train_args(data_, path("again")) +
                                      " --expert-parallel 2 --device-limit 1");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(test::read_bytes(path("again") + "/model.safetensors"), test::read_bytes(path("ep2dp2") + "/model.safetensors"));
  const auto a = test::logged_lines(path("ep2dp2")), b = test::logged_lines(path("again"));
  for (size_t s = 0; s < a.size(); ++s) EXPECT_EQ(a[s]["loss"], b[s]["loss"]) << "step " << s;
}

// The MTP module's block is an MoE layer too: its tokens go through the same
// expert-parallel exchange, its loss and gradient through the same reductions.
TEST_F(DistributedTraining, MtpModulesTrainOnFourRanksAsOnTwoSimulatedDevices) {
  ASSERT_EQ(test::run_dsv2(train_args(data_, path("one")) + " --devices 2 --device-limit 1 --mtp-depth 1").exit_code, 0);
  const auto run = test::run_mpirun("-np 4 " + test::dsv2_binary() + " " + train_args(data_, path("mtp4")) +
                                    " --expert-parallel 2 --device-limit 1 --mtp-depth 1");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_GT(expect_equivalent(path("one"), path("mtp4")), 0.0);
  EXPECT_TRUE(test::logged_lines(path("mtp4"))[0].contains("mtp_loss"));
}

// Rank 1 of a running job, found by its environment (Open MPI sets OMPI_COMM_WORLD_RANK).
pid_t find_rank(int rank, const std::string& marker) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline, environ;
    try {
      cmdline = test::read_bytes(entry.path().string() + "/cmdline");
      environ = test::read_bytes(entry.path().string() + "/environ");
    } catch (const std::exception&) {
      continue;
    }
    if (cmdline.find(marker) == std::string::npos || cmdline.find("train") == std::string::npos) continue;
    if (environ.find(std::string("OMPI_COMM_WORLD_RANK=") + std::to_string(rank) + '\0') != std::string::npos)
      return static_cast<pid_t>(std::stol(name));
  }
  return 0;
}

// Waits for a child up to `seconds`; -1 if it was still running (then it is killed).
int wait_with_timeout(pid_t pid, int seconds) {
  for (int i = 0; i < seconds * 20; ++i) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(-pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

// dsv2 sft on 2 ranks (data parallel, then expert parallel): packed, masked
// conversations give the same losses, validation and weights as one process.
TEST_F(DistributedTraining, SftOnTwoRanksEqualsOneProcess) {
  const std::string conversations = path("c.jsonl"), held_out = path("v.jsonl");
  for (const auto& [file, first, count] : {std::tuple{conversations, 0, 160}, std::tuple{held_out, 900, 9}}) {
    std::string lines;
    for (int i = first; i < first + count; ++i)
      lines += R"({"messages": [{"role": "user", "content": "What is )" + std::to_string(i) + " + " + std::to_string(2 * i) +
               R"(?"}, {"role": "assistant", "content": ")" + std::to_string(3 * i) + R"(."}]})" "\n";
    test::write_bytes(file, lines);
  }
  auto sft = [&](const std::string& out) {
    return "sft -m " + test::fixture("v2_lite") + " --data " + conversations + " --validation " + held_out + " --out " + out +
           " --seq-len 96 --batch-tokens 384 --lr 1e-3 --epochs 1 --eval-every 5 --threads 1";
  };
  ASSERT_EQ(test::run_dsv2(sft(path("one"))).exit_code, 0);
  for (const std::string& extra : {std::string(), std::string(" --expert-parallel 2")}) {
    const std::string out = path(extra.empty() ? "dp2" : "ep2");
    const auto run = test::run_mpirun("-np 2 " + test::dsv2_binary() + " " + sft(out) + extra);
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(std::count(run.out.begin(), run.out.end(), '\n'), 1) << "only rank 0 prints: " << run.out;
    const auto a = test::logged_lines(path("one")), b = test::logged_lines(out);
    ASSERT_EQ(a.size(), b.size());
    ASSERT_GE(a.size(), 10u);
    for (size_t s = 0; s < a.size(); ++s) {
      for (const char* key : {"loss", "grad_norm"})
        EXPECT_LE(relative(a[s][key].get<double>(), b[s][key].get<double>()), 1e-5) << key << " at step " << s << extra;
      ASSERT_EQ(a[s].contains("val_loss"), b[s].contains("val_loss"));
      if (a[s].contains("val_loss")) {
        EXPECT_LE(relative(a[s]["val_loss"].get<double>(), b[s]["val_loss"].get<double>()), 1e-5);
      }
    }
    EXPECT_EQ(b[0]["ranks"], 2);
    EXPECT_EQ(b[0]["alltoall_bytes"].get<int64_t>() > 0, !extra.empty()) << "tokens travel only under expert parallelism";
    expect_same_weights(path("one"), out);
  }
}

TEST_F(DistributedTraining, KilledRankEndsTheJobAndResumeIsBitIdentical) {
  const std::string launch = "-np 2 " + test::dsv2_binary() + " ";
  const std::string flags = " --expert-parallel 2 --device-limit 1";
  ASSERT_EQ(test::run_mpirun(launch + train_args(data_, path("whole"), 40) + flags).exit_code, 0);
  const std::string out = path("killed");
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", (test::mpirun_command() + " " + launch + train_args(data_, out, 40) + flags + " >/dev/null 2>&1").c_str(),
          nullptr);
    _exit(127);
  }
  // After the checkpoint at step 14 and before the end, kill rank 1.
  for (int i = 0; i < 6000 && test::logged_lines(out).size() < 17; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const pid_t rank1 = find_rank(1, out);
  ASSERT_GT(rank1, 0) << "rank 1 not found";
  kill(rank1, SIGKILL);
  const int code = wait_with_timeout(pid, 60);
  ASSERT_NE(code, -1) << "the job hung after a rank was killed";
  EXPECT_NE(code, 0);
  ASSERT_LT(test::logged_lines(out).size(), 40u) << "the kill came after the end";
  EXPECT_TRUE(fs::exists(out + "/latest"));
  const auto resumed = test::run_mpirun(launch + train_args(data_, out, 40) + flags + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto a = test::logged_lines(path("whole")), b = test::logged_lines(out);
  ASSERT_EQ(a.size(), b.size());
  for (size_t s = 0; s < a.size(); ++s) EXPECT_EQ(a[s]["loss"], b[s]["loss"]) << "step " << s;
  EXPECT_EQ(test::read_bytes(out + "/model.safetensors"), test::read_bytes(path("whole") + "/model.safetensors"));
  // A checkpoint of 2 ranks does not resume with another layout.
  const auto other = test::run_mpirun("-np 4 " + test::dsv2_binary() + " " + train_args(data_, out, 60) + flags + " --resume");
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.err.find("resume it with the same"), std::string::npos) << other.err;
}

// The error line appears once (rank 0 reports) and names the cause.
void expect_one_line(const test::CommandResult& r, int exit_code, const std::string& cause) {
  EXPECT_EQ(r.exit_code, exit_code) << r.err;
  const size_t first = r.err.find(cause);
  ASSERT_NE(first, std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(cause, first + 1), std::string::npos) << "reported more than once:\n" << r.err;
}

TEST_F(DistributedTraining, BadLaunchesEndTheJobWithOneLineFromRankZero) {
  const std::string np2 = "-np 2 " + test::dsv2_binary() + " ";
  expect_one_line(test::run_mpirun(np2 + train_args(data_, path("a")) + " --expert-parallel 3"), 2,
                  "--expert-parallel 3 does not divide the 2 ranks");
  expect_one_line(test::run_mpirun(np2 + train_args(data_, path("b")) + " --expert-parallel 2 --devices 4"), 2,
                  "option --devices: under mpirun the devices are the 2 ranks");
  expect_one_line(test::run_mpirun(np2 + train_args(data_, path("c")) + " --seq-len 64 --batch-tokens 64"), 2,
                  "needs at least one sequence per step");
  // Six routed experts do not split over four ranks.
  test::write_bytes(path("six.json"), R"({"model_type": "deepseek_v2", "vocab_size": 520, "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "q_lora_rank": 32, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8, "v_head_dim": 16, "intermediate_size": 128, "moe_intermediate_size": 32,
    "n_shared_experts": 1, "n_routed_experts": 6, "num_experts_per_tok": 2, "first_k_dense_replace": 1})");
  const std::string six = "train --model-config " + path("six.json") + " --tokenizer " + test::fixture("v2_lite") +
                          " --data " + data_ + " --out " + path("d") + " --steps 2 --seq-len 32 --batch-tokens 256";
  expect_one_line(test::run_mpirun("-np 4 " + test::dsv2_binary() + " " + six + " --expert-parallel 4"), 2,
                  "does not divide the model's 6 routed experts");
  // Ranks started differently (MPMD launch): options, then a data file only rank 1 cannot read.
  const std::string one = "-np 1 " + test::dsv2_binary() + " ";
  expect_one_line(test::run_mpirun(one + train_args(data_, path("e")) + " : " + one + train_args(data_, path("e")) + " --lr 1e-3"), 2,
                  "rank 1 was started with different options than rank 0");
  expect_one_line(test::run_mpirun(one + train_args(data_, path("f")) + " : " + one + train_args(path("missing.txt"), path("f"))), 1,
                  "rank 1: " + path("missing.txt") + ": cannot open");
  // Without mpirun there is one rank.
  expect_one_line(test::run_dsv2(train_args(data_, path("g")) + " --expert-parallel 2"), 2, "start dsv2 under mpirun");
  // Commands that do not run across ranks say so instead of running N times.
  expect_one_line(test::run_mpirun(np2 + "info -m " + test::fixture("v2_lite")), 2, "does not run across MPI ranks");
}

}  // namespace
}  // namespace dsv2
