// Inference split over MPI ranks (mpirun -np N dsv2 logits|generate|bench|serve)
// against one process: logits of every reference fixture within 1e-5 of the
// largest logit (prefill and decode, both attention paths), identical greedy
// tokens and temperature-0 server answers, prompt scores (echo + logprobs); per-rank reports; a killed rank
// ends the server's job with 503s and no hang; bad launches fail once, cleanly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "test_util.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

const char* const kIds = "1 5 9 17 3 8 2 11 40 41 7 3 60 2";

// Largest |a - b| over the largest |b|.
double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  const test::Diff d = test::compare(a, b);
  return d.max_abs_diff / std::max(d.max_abs_ref, 1e-30f);
}

std::vector<float> logits_of(const test::CommandResult& run, const std::string& file) {
  EXPECT_EQ(run.exit_code, 0) << run.err;
  return test::read_f32(file);
}

class DistributedLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(DistributedLogits, EqualOneProcessOnEveryRoutingVariant) {
  test::TempDir dir;
  const std::string model = test::fixture(GetParam());
  for (const char* attn : {"absorbed", "naive"}) {
    // Six tokens as one prefill call, then eight decoded one at a time through the cache.
    const std::string args = std::string("logits -m ") + model + " --ids '" + kIds + "' --prefill 6 --attn " + attn;
    const auto one = logits_of(test::run_dsv2(args + " -o " + dir.path("one.f32") + " --threads 1"), dir.path("one.f32"));
    ASSERT_FALSE(one.empty());
    for (int ranks : {2, 4}) {
      if (ranks == 4 && std::string(attn) == "naive") continue;  // 4 ranks: one path is enough
      const std::string out = dir.path("split.f32");
      const auto split = logits_of(test::run_mpirun("-np " + std::to_string(ranks) + " " + test::dsv2_binary() + " " + args +
                                                    " -o " + out),
                                   out);
      ASSERT_EQ(split.size(), one.size()) << ranks << " ranks, " << attn;
      EXPECT_LE(relative_difference(split, one), 1e-5) << ranks << " ranks, " << attn;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DistributedLogits, ::testing::Values("v2_lite", "v2_yarn_bf16", "v3_fp8_yarn", "v3_sharded"));

TEST(DistributedInference, QuantizedCacheAndLoadTimeQuantizationAgreeToo) {
  test::TempDir dir;
  const std::string args = std::string("logits -m ") + test::fixture("v2_lite") + " --ids '" + kIds +
                           "' --prefill 4 --cache-type q4 --quantize q8";
  const auto one = logits_of(test::run_dsv2(args + " -o " + dir.path("one.f32")), dir.path("one.f32"));
  const auto split = logits_of(test::run_mpirun("-np 2 " + test::dsv2_binary() + " " + args + " -o " + dir.path("two.f32")),
                               dir.path("two.f32"));
  // Looser than the float paths' 1e-5: the ranks' partial sums round differently,
  // and an int8 activation or a q4 cache row then lands on the other side of a
  // rounding boundary now and then (2.7e-5 in the sanitizer build, 2026-11-30).
  EXPECT_LE(relative_difference(split, one), 1e-4);
}

TEST(DistributedInference, GreedyGenerationGivesTheSameTokens) {
  // The shipped model (default -m): 16 routed experts, 8 heads.
  const std::string args = "generate --prompt 'It was a dark and stormy night' -n 48 --temperature 0 --ignore-eos";
  const auto one = test::run_dsv2(args + " --threads 1");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto two = test::run_mpirun("-np 2 " + test::dsv2_binary() + " " + args);
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(two.out, one.out);
  EXPECT_GT(one.out.size(), 48u);
}

TEST(DistributedInference, BenchReportsEveryRankAndSkippedExpertWork) {
  // Group-limited routing with one group per rank (n_group 4 on 4 ranks):
  // a rank whose group no token chose skips its routed work.
  const auto run = test::run_mpirun("-np 4 " + test::dsv2_binary() + " bench -m " + test::fixture("v2_yarn_bf16") +
                                    " --prompt 8 --gen 32 --ctx 16 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto j = nlohmann::json::parse(run.out);
  ASSERT_EQ(j["rank_peak_rss_bytes"].size(), 4u);
  for (const auto& rss : j["rank_peak_rss_bytes"]) EXPECT_GT(rss.get<int64_t>(), 0);
  EXPECT_GT(j["exchange_bytes_per_token"].get<double>(), 0.0);
  double skipped = 0.0;
  for (const auto& share : j["rank_expert_skip_share"]) {
    EXPECT_GE(share.get<double>(), 0.0);
    EXPECT_LE(share.get<double>(), 1.0);
    skipped += share.get<double>();
  }
  EXPECT_GT(skipped, 0.0) << "topk_group 2 of 4 groups: some rank has no routed work in some steps";
  const auto one = nlohmann::json::parse(test::run_dsv2("bench -m " + test::fixture("v2_yarn_bf16") + " --prompt 8 --gen 4 --json").out);
  EXPECT_EQ(one["rank_peak_rss_bytes"].size(), 1u);
  EXPECT_EQ(one["exchange_bytes_per_token"], 0.0);
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

// A dsv2 serve started by the test (through mpirun when ranks > 1), ended at destruction.
class ServeProcess {
 public:
  ServeProcess(int ranks, const std::string& extra = "") : port_(free_port()) {
    const std::string serve = test::dsv2_binary() + " serve --port " + std::to_string(port_) + " " + extra;
    // (one process: exec'd by the shell, so that pid_ is the server itself)
    const std::string command = ranks > 1 ? test::mpirun_command() + " -np " + std::to_string(ranks) + " " + serve : "exec " + serve;
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      execl("/bin/sh", "sh", "-c", (command + " >/dev/null 2>&1").c_str(), nullptr);
      _exit(127);
    }
    httplib::Client client("127.0.0.1", port_);
    for (int i = 0; i < 600 && !client.Get("/health"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ~ServeProcess() {
    if (pid_ <= 0) return;
    kill(-pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // Waits up to `seconds` for the server to end: its exit code, or -1 (it was still running: killed).
  int wait_for_exit(int seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }

 private:
  int port_;
  pid_t pid_ = 0;
};

std::string post(int port, const std::string& path, const nlohmann::json& body) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  const auto res = client.Post(path.c_str(), body.dump(), "application/json");
  return res ? res->body : "(no response)";
}

TEST(DistributedInference, ServerAnswersEqualOneProcessAtTemperatureZero) {
  ServeProcess one(1), two(2);
  const nlohmann::json completion = {{"prompt", "It was a dark and stormy night"}, {"max_tokens", 32}, {"temperature", 0}};
  const nlohmann::json chat = {{"messages", {{{"role", "user"}, {"content", "Tell me a story about the sea."}}}},
                               {"max_tokens", 24},
                               {"temperature", 0}};
  for (const auto& [path, body] : {std::pair{"/v1/completions", completion}, std::pair{"/v1/chat/completions", chat}}) {
    const auto a = nlohmann::json::parse(post(one.port(), path, body));
    // Two requests at once on the split server: continuous batching across ranks.
    auto b_async = std::async(std::launch::async, [&, path = path, body = body] { return post(two.port(), path, body); });
    const auto c = nlohmann::json::parse(post(two.port(), path, body));
    const auto b = nlohmann::json::parse(b_async.get());
    const char* field = std::string(path) == "/v1/completions" ? "text" : "message";
    ASSERT_TRUE(a.contains("choices")) << a.dump();
    ASSERT_TRUE(b.contains("choices")) << b.dump();
    EXPECT_EQ(b["choices"][0][field], a["choices"][0][field]) << path;
    EXPECT_EQ(c["choices"][0][field], a["choices"][0][field]) << path;
  }
}

// Echo + logprobs (what lm-evaluation-harness scores with) runs its own Model::forward call keeping
// every row: across ranks it gives one process's log-probabilities, also beside a batched generation.
TEST(DistributedInference, ServerScoresPromptsAsOneProcess) {
  ServeProcess one(1), two(2);
  const nlohmann::json score = {{"prompt", "It was a dark and stormy night; 床前明月光"}, {"max_tokens", 0},
                                {"echo", true}, {"logprobs", 2}};
  const nlohmann::json generate = {{"prompt", "The king said"}, {"max_tokens", 16}, {"temperature", 0}};
  const auto a = nlohmann::json::parse(post(one.port(), "/v1/completions", score));
  auto busy = std::async(std::launch::async, [&] { return post(two.port(), "/v1/completions", generate); });
  const auto b = nlohmann::json::parse(post(two.port(), "/v1/completions", score));
  EXPECT_EQ(nlohmann::json::parse(busy.get())["choices"][0]["text"],
            nlohmann::json::parse(post(one.port(), "/v1/completions", generate))["choices"][0]["text"]);
  ASSERT_TRUE(a.contains("choices")) << a.dump();
  ASSERT_TRUE(b.contains("choices")) << b.dump();
  const nlohmann::json &x = a["choices"][0]["logprobs"], &y = b["choices"][0]["logprobs"];
  EXPECT_EQ(y["tokens"], x["tokens"]);
  ASSERT_EQ(y["token_logprobs"].size(), x["token_logprobs"].size());
  EXPECT_TRUE(y["token_logprobs"][0].is_null());
  // bf16 prefill rounds activations to bf16 (ops/gemm_bf16.h): the ranks' float32 partial sums can tip
  // an activation across a rounding boundary (one bf16 step, 2^-8 of it). Rounding all of them moved
  // dsv2-mini's logits by up to 0.02 (Bf16Prefill test); a few tipped ones move far less (seen: 3.4e-4).
  for (size_t i = 1; i < x["token_logprobs"].size(); ++i)
    EXPECT_NEAR(y["token_logprobs"][i].get<double>(), x["token_logprobs"][i].get<double>(), 2e-3) << i;
}

// Rank `rank` of the job whose command line (NUL-separated) holds `marker`.
pid_t rank_process(int rank, const std::string& marker) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    try {
      const std::string cmdline = test::read_bytes(entry.path().string() + "/cmdline");
      const std::string environ = test::read_bytes(entry.path().string() + "/environ");
      if (cmdline.find(marker) != std::string::npos && cmdline.find("dsv2") != std::string::npos &&
          environ.find("OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + '\0') != std::string::npos)
        return static_cast<pid_t>(std::stol(name));
    } catch (const std::exception&) {
    }
  }
  return 0;
}

// One process: SIGTERM or SIGINT stops the server and it exits 0 (its own
// handling; the stop is retried until listen() has returned, so a signal right
// as the server starts listening is not lost).
TEST(DistributedInference, OneProcessServerEndsCleanlyOnSigtermAndSigint) {
  for (int sig : {SIGTERM, SIGINT}) {
    ServeProcess server(1);
    ASSERT_TRUE(httplib::Client("127.0.0.1", server.port()).Get("/health")) << "the server did not come up";
    kill(server.pid(), sig);
    EXPECT_EQ(server.wait_for_exit(30), 0) << "signal " << sig;
  }
}

TEST(DistributedInference, KilledRankEndsTheServerWith503AndNoHang) {
  ServeProcess server(2, "--ctx 2048");
  // A long request in flight...
  auto answer = std::async(std::launch::async, [&] {
    return post(server.port(), "/v1/completions",
                {{"prompt", "It was"}, {"max_tokens", 2000}, {"temperature", 0.8}, {"seed", 1}});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const pid_t rank1 = rank_process(1, std::string("--port") + '\0' + std::to_string(server.port()) + '\0');
  ASSERT_GT(rank1, 0);
  kill(rank1, SIGKILL);
  // ...is answered with a 503 error, and the job ends.
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(30)), std::future_status::ready) << "the request hung";
  const std::string body = answer.get();
  EXPECT_NE(body.find("service_unavailable"), std::string::npos) << body;
  const int code = server.wait_for_exit(30);
  EXPECT_NE(code, -1) << "the job hung after a rank was killed";
  EXPECT_NE(code, 0);
}

TEST(DistributedInference, BadLaunchesFailOnceWithTheReason) {
  const std::string logits = std::string(" logits -m ") + test::fixture("v2_lite") + " --ids '1 2 3' -o /dev/null";
  auto expect_once = [](const test::CommandResult& r, int code, const std::string& cause) {
    EXPECT_EQ(r.exit_code, code) << r.err;
    const size_t at = r.err.find(cause);
    ASSERT_NE(at, std::string::npos) << r.err;
    EXPECT_EQ(r.err.find(cause, at + 1), std::string::npos) << "reported more than once:\n" << r.err;
  };
  expect_once(test::run_mpirun("-np 2 " + test::dsv2_binary() + logits + " --expert-parallel 4"), 2,
              "option --expert-parallel: inference splits the model over all 2 rank(s), so it must be 2");
  expect_once(test::run_mpirun("-np 3 " + test::dsv2_binary() + logits), 1, "routed experts do not divide over 3 ranks");
  expect_once(test::run_dsv2(logits.substr(1) + " --expert-parallel 2"), 2, "start dsv2 under mpirun -np N");
  // The planning view needs no MPI: each of 8 ranks' share of DeepSeek-V3 at 4 bits.
  const auto info = test::run_dsv2("info --like deepseek-v3 --dtype q4 --expert-parallel 8");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("per rank of 8"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("rank 7"), std::string::npos) << info.out;
}

}  // namespace
}  // namespace dsv2
