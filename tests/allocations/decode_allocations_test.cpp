// Steady-state decoding allocates nothing: after a few warm-up tokens (buffers
// reach their size), one more token through the whole model — embedding, MLA
// with the tiled absorbed attention, DeepSeekMoE routing and experts, LM head —
// makes no heap allocation on any thread, for each weight and cache type.
//
// A separate executable because it replaces the global operator new/delete
// (counting calls), which must not happen in the sanitizer build's main tests.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "core/parallel.h"
#include "model/model.h"
#include "runtime/sampler.h"

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace dsv2 {
namespace {

TEST(DecodeAllocations, NoneInSteadyState) {
  set_num_threads(2);
  for (auto quantize : {std::optional<DType>{}, std::optional<DType>{DType::I8}, std::optional<DType>{DType::U8}})
    for (CacheType cache_type : {CacheType::kF32, CacheType::kQ8}) {
      Model model(DSV2_SHIPPED_MODEL, quantize);
      LatentCache cache(model.config(), 600, 0, cache_type);
      std::vector<float> logits(static_cast<size_t>(model.config().vocab_size));
      std::vector<int32_t> prompt(520, 7);  // long enough that decoding splits positions over threads
      model.forward(prompt.data(), static_cast<int64_t>(prompt.size()), cache, AttentionPath::kAbsorbed, logits.data(), true);
      for (int32_t id : {1, 2, 3}) model.forward(&id, 1, cache, AttentionPath::kAbsorbed, logits.data(), true);
      const int32_t id = 4;
      allocations = 0;
      counting = true;
      model.forward(&id, 1, cache, AttentionPath::kAbsorbed, logits.data(), true);
      counting = false;
      EXPECT_EQ(allocations.load(), 0) << (quantize ? dtype_name(*quantize) : "as stored") << ", cache "
                                       << cache_type_name(cache_type);
    }
}

// Every sampling control on, history included: the buffers are sized when the
// sampler is made, so drawing a token allocates nothing.
TEST(DecodeAllocations, NoneWhileSampling) {
  const int64_t vocab = 12000;
  std::vector<float> logits(vocab);
  for (int64_t i = 0; i < vocab; ++i) logits[i] = static_cast<float>((i * 7919) % 1000) / 100.0f;
  for (int64_t window : {64, -1}) {
    SamplingOptions o{0.8f, 0.95f, 40, 1};
    o.min_p = 0.05f;
    o.repeat_penalty = 1.1f;
    o.repeat_last_n = window;
    o.frequency_penalty = 0.3f;
    o.presence_penalty = 0.2f;
    o.logit_bias = {{5, 2.0f}, {9, -100.0f}};
    Sampler sampler(o, vocab);
    const std::vector<int32_t> prompt(100, 3);
    sampler.add_context(prompt.data(), static_cast<int64_t>(prompt.size()));
    allocations = 0;
    counting = true;
    for (int i = 0; i < 200; ++i) sampler.sample(logits.data());
    counting = false;
    EXPECT_EQ(allocations.load(), 0) << "repeat_last_n " << window;
  }
}

}  // namespace
}  // namespace dsv2
