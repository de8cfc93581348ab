// dsv2 train --mtp-depth end to end (the gradients are checked against torch
// autograd in training_gradients_test.cpp, case v3_mtp): the λ schedule in the
// log, DeepSeek-V3's checkpoint layout (which the drafting module then loads),
// exact resume with the modules, continued training from a model without them,
// and bad options.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/safetensors.h"
#include "test_util.h"

namespace dsv2 {
namespace {

std::string train_command(const std::string& data, const std::string& out, const std::string& extra) {
  return std::string(DSV2_BINARY) + " train --preset tiny --tokenizer " + test::fixture("v2_lite") + " --data " + data +
         " --out " + out + " --seq-len 48 --batch-tokens 768 --lr 3e-3 --eval-every 10 --threads 2 " + extra;
}

std::vector<uint8_t> tensor_bytes(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* t = file.find(name);
  if (!t) return {};
  const auto* p = reinterpret_cast<const uint8_t*>(t->data);
  return {p, p + t->nbytes};
}

TEST(MtpTraining, WritesV3LayoutDraftsAndResumesExactly) {
  test::TempDir dir;
  const std::string data = dir.path("text.txt");
  test::write_bytes(data, test::generated_text(120000));
  const std::string options = "--steps 24 --checkpoint-every 5 --mtp-depth 1 --mtp-lambda-switch 0.5";
  const std::string whole = dir.path("whole");
  ASSERT_EQ(std::system((train_command(data, whole, options) + " 2>/dev/null >/dev/null").c_str()), 0);

  // The log: the MTP loss every step, λ = 0.3 for the first half of the tokens, then 0.1.
  const auto lines = test::logged_lines(whole);
  ASSERT_EQ(lines.size(), 24u);
  for (size_t s = 0; s < lines.size(); ++s) {
    ASSERT_TRUE(lines[s].contains("mtp_loss")) << s;
    EXPECT_GT(lines[s]["mtp_loss"].get<double>(), 0.0);
    EXPECT_EQ(lines[s]["mtp_lambda"].get<double>(), s < 12 ? 0.3 : 0.1) << "step " << s;
  }
  EXPECT_LT(lines.back()["mtp_loss"].get<double>(), lines.front()["mtp_loss"].get<double>()) << "the module learns";

  // V3's layout: model.layers.<num_hidden_layers>.* with copies of the embedding and the head.
  const auto config = nlohmann::json::parse(test::read_bytes(whole + "/config.json"));
  EXPECT_EQ(config["num_nextn_predict_layers"], 1);
  const int layers = config["num_hidden_layers"];
  SafetensorsFile model(whole + "/model.safetensors");
  const std::string p = "model.layers." + std::to_string(layers) + ".";
  for (const char* name : {"enorm.weight", "hnorm.weight", "eh_proj.weight", "input_layernorm.weight",
                           "self_attn.kv_b_proj.weight", "mlp.gate.weight", "mlp.experts.7.down_proj.weight",
                           "shared_head.norm.weight", "embed_tokens.weight", "shared_head.head.weight"})
    EXPECT_NE(model.find(p + name), nullptr) << p + name;
  EXPECT_EQ(tensor_bytes(model, p + "embed_tokens.weight"), tensor_bytes(model, "model.embed_tokens.weight"));
  EXPECT_EQ(tensor_bytes(model, p + "shared_head.head.weight"), tensor_bytes(model, "lm_head.weight"));
  EXPECT_EQ(model.find("model.layers." + std::to_string(layers + 1) + ".enorm.weight"), nullptr);

  // The drafting module loads it; greedy speculative output equals plain greedy.
  const std::string gen = "generate -m " + whole + " --prompt 'The old sailor' -n 24 --temperature 0 --ignore-eos";
  const auto plain = test::run_dsv2(gen);
  const auto drafted = test::run_dsv2(gen + " --speculative mtp --draft 2");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(drafted.exit_code, 0) << drafted.err;
  EXPECT_EQ(drafted.out, plain.out);

  // `dsv2 quantize` keeps the module (q4: its copies of the embedding and head in q8, as the main ones).
  for (const char* type : {"q8", "q4"}) {
    const std::string q = dir.path(type);
    const auto made = test::run_dsv2("quantize -m " + whole + " -o " + q + " --type " + type);
    ASSERT_EQ(made.exit_code, 0) << made.err;
    SafetensorsFile quantized(q + "/model.safetensors");
    ASSERT_NE(quantized.find(p + "eh_proj.weight"), nullptr) << type;
    EXPECT_EQ(quantized.find(p + "shared_head.head.weight")->dtype, quantized.find("lm_head.weight")->dtype) << type;
    const std::string qgen = "generate -m " + q + " --prompt 'The old sailor' -n 24 --temperature 0 --ignore-eos";
    const auto qplain = test::run_dsv2(qgen);
    const auto qdrafted = test::run_dsv2(qgen + " --speculative mtp");
    ASSERT_EQ(qdrafted.exit_code, 0) << qdrafted.err;
    EXPECT_EQ(qdrafted.out, qplain.out) << type;
  }

  // Killed after a checkpoint and resumed: the same curve and weights, bit for bit.
  const std::string killed = dir.path("killed");
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + train_command(data, killed, options) + " 2>/dev/null >/dev/null").c_str(),
          nullptr);
    _exit(127);
  }
  for (int i = 0; i < 120000 && test::logged_lines(killed).size() < 13; ++i) std::this_thread::sleep_for(std::chrono::microseconds(500));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_EQ(std::system((train_command(data, killed, options + " --resume") + " 2>/dev/null >/dev/null").c_str()), 0);
  const auto resumed = test::logged_lines(killed);
  ASSERT_EQ(resumed.size(), lines.size());
  for (size_t s = 0; s < lines.size(); ++s) {
    EXPECT_EQ(resumed[s]["loss"], lines[s]["loss"]) << s;
    EXPECT_EQ(resumed[s]["mtp_loss"], lines[s]["mtp_loss"]) << s;
  }
  EXPECT_EQ(test::read_bytes(killed + "/model.safetensors"), test::read_bytes(whole + "/model.safetensors"));
}

TEST(MtpTraining, InitFromAModelWithoutModulesStartsThemFresh) {
  test::TempDir dir;
  const std::string data = dir.path("text.txt");
  test::write_bytes(data, test::generated_text(60000));
  const std::string base = dir.path("base");
  ASSERT_EQ(std::system((train_command(data, base, "--steps 6") + " 2>/dev/null >/dev/null").c_str()), 0);
  // The first step's main loss is the base model's whether or not modules are added:
  // the main weights were loaded, the modules only add their own loss.
  const std::string plain = dir.path("plain"), with_mtp = dir.path("mtp");
  const std::string cont = " --steps 1 --checkpoint-every 0 --eval-every 0";
  const auto a = test::run_dsv2("train --init-from " + base + " --data " + data + " --out " + plain + " --seq-len 48 --batch-tokens 768" + cont);
  const auto b = test::run_dsv2("train --init-from " + base + " --data " + data + " --out " + with_mtp +
                                " --seq-len 48 --batch-tokens 768 --mtp-depth 1" + cont);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(test::logged_lines(with_mtp)[0]["loss"], test::logged_lines(plain)[0]["loss"]);
  EXPECT_FALSE(test::logged_lines(plain)[0].contains("mtp_loss"));
  EXPECT_GT(test::logged_lines(with_mtp)[0]["mtp_loss"].get<double>(), 0.0);
  const auto config = nlohmann::json::parse(test::read_bytes(with_mtp + "/config.json"));
  EXPECT_EQ(config["num_nextn_predict_layers"], 1);
}

TEST(MtpTraining, FreezeModelTrainsOnlyTheModule) {
  test::TempDir dir;
  const std::string data = dir.path("text.txt");
  test::write_bytes(data, test::generated_text(60000));
  const std::string base = dir.path("base"), out = dir.path("frozen");
  ASSERT_EQ(std::system((train_command(data, base, "--steps 4") + " 2>/dev/null >/dev/null").c_str()), 0);
  const auto r = test::run_dsv2("train --init-from " + base + " --data " + data + " --out " + out +
                                " --seq-len 48 --batch-tokens 768 --lr 3e-3 --warmup 2 --steps 12 --eval-every 0"
                                " --mtp-depth 1 --freeze-model");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = test::logged_lines(out);
  ASSERT_EQ(lines.size(), 12u);
  EXPECT_LT(lines.back()["mtp_loss"].get<double>(), lines.front()["mtp_loss"].get<double>());
  // Every tensor of the model is as loaded; the module's are new.
  SafetensorsFile before(base + "/model.safetensors"), after(out + "/model.safetensors");
  int compared = 0;
  for (const auto& t : before.tensors()) {
    EXPECT_EQ(tensor_bytes(after, t.name), tensor_bytes(before, t.name)) << t.name;
    ++compared;
  }
  EXPECT_GT(compared, 20);
  EXPECT_NE(after.find("model.layers.2.eh_proj.weight"), nullptr);
}

TEST(MtpTraining, RejectsBadOptions) {
  test::TempDir dir;
  const std::string data = dir.path("text.txt");
  test::write_bytes(data, test::generated_text(2000));
  const std::string base = "train --preset tiny --tokenizer " + test::fixture("v2_lite") + " --data " + data + " --out " + dir.path("o");
  for (const char* bad : {" --mtp-depth -1", " --mtp-depth 9", " --mtp-depth x", " --mtp-lambda 0.2",
                          " --mtp-depth 1 --mtp-lambda -1", " --mtp-depth 1 --mtp-lambda-switch 2",
                          " --mtp-depth 2 --seq-len 2", " --mtp-depth 1 --freeze-model"}) {
    const auto r = test::run_dsv2(base + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    std::string err = r.err;
    for (char& ch : err) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    EXPECT_NE(err.find("mtp"), std::string::npos) << bad << ": " << r.err;
  }
}

}  // namespace
}  // namespace dsv2
