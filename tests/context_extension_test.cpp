// Long context: continued training with YaRN written as DeepSeek's checkpoints
// carry it (dsv2 train --init-from ... --rope-scaling yarn), passkey episodes,
// the needle-in-a-haystack command and its heatmap, and generation stopping
// at the context length.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/png.h"
#include "io/safetensors.h"
#include "runtime/heatmap.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

namespace dsv2 {
namespace {

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(test::read_bytes(path)); }

TEST(ContextExtension, InitFromWritesYarnAsDeepSeekCheckpointsCarryIt) {
  test::TempDir dir;
  const std::string data = dir.path("text.txt");
  test::write_bytes(data, test::generated_text(60000));
  const std::string common =
      " --tokenizer " + test::fixture("v2_lite") + " --data " + data + " --eval-every 0 --checkpoint-every 0";
  ASSERT_EQ(test::run_dsv2("train --preset tiny --steps 2 --seq-len 64 --batch-tokens 256 --out " + dir.path("base") + common)
                .exit_code,
            0);
  // A learning rate of 0 leaves the weights as they were: the run starts from the base model's.
  const auto extended = test::run_dsv2("train --init-from " + dir.path("base") +
                                       " --rope-scaling yarn --rope-factor 4 --original-max 64 --steps 1 --seq-len 256 "
                                       "--batch-tokens 256 --lr 0 --out " + dir.path("long") + common);
  ASSERT_EQ(extended.exit_code, 0) << extended.err;
  const auto config = read_json(dir.path("long") + "/config.json");
  EXPECT_EQ(config["max_position_embeddings"], 256);
  const auto& y = config["rope_scaling"];
  EXPECT_EQ(y["type"], "yarn");
  EXPECT_EQ(y["factor"], 4.0);
  EXPECT_EQ(y["original_max_position_embeddings"], 64);
  EXPECT_EQ(y["beta_fast"], 32.0);
  EXPECT_EQ(y["beta_slow"], 1.0);
  EXPECT_EQ(y["mscale"], 0.707);
  EXPECT_EQ(y["mscale_all_dim"], 0.707);
  SafetensorsFile base(dir.path("base") + "/model.safetensors"), long_model(dir.path("long") + "/model.safetensors");
  ASSERT_EQ(base.tensors().size(), long_model.tensors().size());
  for (const TensorInfo& t : base.tensors()) {
    const TensorInfo* u = long_model.find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    ASSERT_EQ(u->nbytes, t.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(u->data, t.data, t.nbytes), 0) << t.name << " changed with lr 0";
  }
  // The extended model's 256 positions do not allow 512-token sequences.
  const auto too_long = test::run_dsv2("train --init-from " + dir.path("long") +
                                       " --steps 1 --seq-len 512 --batch-tokens 512 --out " + dir.path("x") + common);
  EXPECT_EQ(too_long.exit_code, 2);
  EXPECT_NE(too_long.err.find("exceeds the model's max_position_embeddings"), std::string::npos) << too_long.err;
  for (const char* bad : {" --passkey-loss answer", " --passkey-share 0.5 --passkey-loss digits"}) {
    const auto r = test::run_dsv2("train --init-from " + dir.path("base") + " --steps 1 --out " + dir.path("z") + bad + common);
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_NE(r.err.find("--passkey-loss"), std::string::npos) << r.err;
  }
  EXPECT_EQ(test::run_dsv2("train --init-from " + dir.path("base") + " --rope-scaling linear --rope-factor 4 --out " +
                           dir.path("y") + common).exit_code,
            2);
}

TEST(ContextExtension, PasskeyEpisodesHideANumberAndAskForItAtTheEnd) {
  const auto tokenizer = Tokenizer::load(test::fixture("tokenizers/deepseek_v2"));
  const PasskeyFormat f = PasskeyFormat::from(*tokenizer);
  TokenStream stream;
  stream.tokens = tokenizer->encode(test::generated_text(20000), {false, false});
  BatchSampler sampler(stream, 7, 0.1, /*passkey_share=*/1.0, &f);
  const Batch b = sampler.next(6, 200);
  for (int64_t s = 0; s < b.batch; ++s) {
    std::vector<int32_t> seq(b.inputs.begin() + s * 200, b.inputs.begin() + (s + 1) * 200);
    seq.push_back(b.targets[(s + 1) * 200 - 1]);
    const std::string text = tokenizer->decode(seq);
    const size_t needle = text.find("The secret number is ");
    ASSERT_NE(needle, std::string::npos) << text;
    const std::string number = text.substr(needle + 21, 5);
    for (char c : number) EXPECT_TRUE(c >= '0' && c <= '9') << text;
    EXPECT_EQ(text.substr(needle + 26, 1), ".");
    EXPECT_EQ(text.substr(text.size() - 28), "\nThe secret number is " + number + ".") << "the question and its answer end the episode";
  }
}

TEST(ContextExtension, AnswerOnlyLossKeepsTheTargetsOfTheAnswer) {
  const auto tokenizer = Tokenizer::load(test::fixture("tokenizers/deepseek_v2"));
  PasskeyFormat f = PasskeyFormat::from(*tokenizer);
  f.answer_only_loss = true;
  TokenStream stream;
  stream.tokens = tokenizer->encode(test::generated_text(20000), {false, false});
  BatchSampler sampler(stream, 7, 0.1, /*passkey_share=*/1.0, &f);
  const Batch b = sampler.next(3, 100);
  for (int64_t s = 0; s < b.batch; ++s) {
    std::vector<int32_t> kept;
    for (int64_t t = 0; t < 100; ++t)
      if (const int32_t target = b.targets[s * 100 + t]; target >= 0) kept.push_back(target);
      else EXPECT_EQ(target, -1);
    ASSERT_EQ(kept.size(), 7u) << "sequence " << s;
    const std::string answer = tokenizer->decode(kept);
    ASSERT_EQ(answer.size(), 7u);
    EXPECT_EQ(answer[0], ' ');
    for (char c : answer.substr(1, 5)) EXPECT_TRUE(c >= '0' && c <= '9') << answer;
    EXPECT_EQ(answer[6], '.');
    EXPECT_GE(b.inputs[s * 100 + 99], 0) << "inputs are never masked";
  }
}

TEST(ContextExtension, HeatmapColoursCellsFromRedToGreen) {
  Heatmap h{"T", "X", "Y", {"1K", "2K"}, {"0%", "100%"}, {0.0, 1.0, 0.5, NAN}};
  const RgbImage image = render_heatmap(h);
  ASSERT_GT(image.width, 100);
  // The centre column of each cell, at the cell's top edge (clear of its number).
  auto pixel = [&](int x, int y) {
    const uint8_t* p = image.pixels.data() + (static_cast<size_t>(y) * image.width + x) * 3;
    return std::array<int, 3>{p[0], p[1], p[2]};
  };
  int left = -1, top = -1;  // the first coloured pixel: the top-left cell (score 0: red)
  for (int y = 0; y < image.height && top < 0; ++y)
    for (int x = 0; x < image.width; ++x)
      if (const auto p = pixel(x, y); p[0] > 200 && p[1] < 80) {
        left = x, top = y;
        break;
      }
  ASSERT_GE(top, 0) << "no red cell";
  EXPECT_GT(pixel(left + 64, top + 2)[1], 140) << "score 1: green";
  EXPECT_GT(pixel(left + 2, top + 38)[0], 240) << "score 0.5: yellow";
  EXPECT_EQ(pixel(left + 66, top + 38), (std::array<int, 3>{200, 200, 200})) << "no score: grey";
  test::TempDir dir;
  write_png(dir.path("h.png"), image);
  const std::string png = test::read_bytes(dir.path("h.png"));
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  const auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(png[at])) << 24) | (uint32_t(uint8_t(png[at + 1])) << 16) |
           (uint32_t(uint8_t(png[at + 2])) << 8) | uint32_t(uint8_t(png[at + 3]));
  };
  EXPECT_EQ(be32(16), static_cast<uint32_t>(image.width));
  EXPECT_EQ(be32(20), static_cast<uint32_t>(image.height));
}

TEST(ContextExtension, NiahReportsEveryCellAndDrawsTheHeatmap) {
  test::TempDir dir;
  test::write_bytes(dir.path("hay.txt"), test::generated_text(30000));
  const auto run = test::run_dsv2("niah -m " + test::fixture("v2_lite") + " --haystack " + dir.path("hay.txt") +
                                  " --held-out 0 --lengths 64,128 --depths 0,50,100 --trials 2 --json --plot " +
                                  dir.path("map.png"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::istringstream lines(run.out);
  int cells = 0;
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("length")) {
      ++cells;
      EXPECT_EQ(j["trials"], 2);
      EXPECT_GE(j["accuracy"].get<double>(), 0.0);
      EXPECT_LE(j["accuracy"].get<double>(), 1.0);
      EXPECT_NEAR(j["prompt_tokens"].get<double>(), j["length"].get<double>(), 4.0);
      // every wrong answer listed: a five-digit needle and a completion that does not start with it
      ASSERT_EQ(j["misses"].size(), 2u - j["correct"].get<size_t>());
      for (const auto& miss : j["misses"]) {
        const std::string expected = miss["expected"], completion = miss["completion"];
        EXPECT_EQ(expected.size(), 5u);
        EXPECT_NE(completion.find_first_not_of(' ') == std::string::npos ? "" : completion.substr(completion.find_first_not_of(' '), 5), expected);
      }
    }
  }
  EXPECT_EQ(cells, 6);
  EXPECT_EQ(test::read_bytes(dir.path("map.png")).substr(1, 3), "PNG");
  EXPECT_EQ(test::run_dsv2("niah -m " + test::fixture("v2_lite") + " --haystack " + dir.path("hay.txt") + " --depths 120").exit_code,
            2);
  const auto no_text = test::run_dsv2("niah -m " + test::fixture("v2_lite"));
  EXPECT_EQ(no_text.exit_code, 2);
}

TEST(ContextExtension, GenerationStopsAtTheContextLength) {
  const auto run = test::run_dsv2("generate -m " + test::fixture("v2_lite") + " --ids '1 2 3' -n 100 --ctx 10 --ignore-eos");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::istringstream ids(run.out);
  int count = 0;
  for (std::string id; ids >> id;) ++count;
  EXPECT_EQ(count, 7) << "3 prompt tokens + 7 generated fill the 10 positions";
  EXPECT_NE(run.err.find("stopped at the context length (10 tokens"), std::string::npos) << run.err;
  EXPECT_EQ(test::run_dsv2("generate -m " + test::fixture("v2_lite") + " --ids '1 2 3' --ctx 3").exit_code, 2);
}

}  // namespace
}  // namespace dsv2
