// A prompt's routed experts run either each split over the threads by rows
// or each whole on one thread (model/moe.cpp picks by how many experts the
// prompt's tokens chose): both must give the logits of one thread, bit for bit,
// whichever thread ran which expert.
#include <gtest/gtest.h>

#include <cstring>

#include "core/parallel.h"
#include "model/model.h"
#include "model/random_model.h"
#include "test_util.h"

namespace dsv2 {
namespace {

// The small V3-shaped fixture config with 64 routed experts (6 per token):
// 96 tokens choose ~all of them, a few each, so two threads run them whole.
Config many_experts() {
  Config c = load_config(test::fixture("v3_fp8_yarn"));
  c.n_routed_experts = 64, c.num_experts_per_tok = 6, c.n_group = 8, c.topk_group = 4;
  return c;
}

std::vector<float> prefill_logits(const std::string& dir, int threads, const std::vector<int32_t>& ids) {
  set_num_threads(threads);
  Model model(dir);
  LatentCache cache(model.config(), static_cast<int64_t>(ids.size()));
  std::vector<float> logits(ids.size() * model.config().vocab_size);
  model.forward(ids.data(), static_cast<int64_t>(ids.size()), cache, AttentionPath::kAbsorbed, logits.data());
  return logits;
}

TEST(MoePrefill, ExpertsWholePerThreadGiveTheBitsOfOneThread) {
  test::TempDir tmp;
  const Config c = many_experts();
  std::vector<int32_t> ids(96);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 53 + 7) % c.vocab_size);
  const int before = num_threads();
  for (DType type : {DType::BF16, DType::I8, DType::U8}) {
    const std::string dir = tmp.path(dtype_name(type));
    write_random_model(c, type, dir, 5);
    const auto one = prefill_logits(dir, 1, ids);
    for (int threads : {2, 3}) {
      const auto many = prefill_logits(dir, threads, ids);
      ASSERT_EQ(one.size(), many.size());
      EXPECT_EQ(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)), 0)
          << dtype_name(type) << ", " << threads << " threads";
    }
  }
  set_num_threads(before);
}

}  // namespace
}  // namespace dsv2
