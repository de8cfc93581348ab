// Continuous batching: several sequences, each with its own (paged) latent
// cache, run through one forward step must get the logits each would get alone.
#include <gtest/gtest.h>

#include <deque>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/model.h"
#include "test_util.h"

namespace dsv2 {
namespace {

// Logits of every position of `ids` run one sequence at a time (the reference
// path, itself checked against transformers).
std::vector<float> alone(Model& model, const std::vector<int32_t>& ids) {
  LatentCache cache(model.config(), 64);
  std::vector<float> logits(ids.size() * model.config().vocab_size);
  model.forward(ids.data(), static_cast<int64_t>(ids.size()), cache, AttentionPath::kAbsorbed, logits.data());
  return logits;
}

class BatchedForward : public testing::TestWithParam<AttentionPath> {};

TEST_P(BatchedForward, MatchesEachSequenceAlone) {
  for (const char* name : {"v2_lite", "v3_fp8_yarn"}) {
    Model model(test::fixture(name));
    const int64_t vocab = model.config().vocab_size;
    const std::vector<std::vector<int32_t>> seqs = {{5, 9, 17, 3, 8, 2, 11, 40, 41, 7},
                                                    {60, 7, 7, 1, 90, 33, 12, 5, 6, 77},
                                                    {120, 4, 31, 8, 9, 10, 99, 3, 2, 1}};
    // Sequence s is prefilled with its first 2 + 2s tokens (different lengths,
    // in one batch), then all step one token at a time together.
    std::deque<LatentCache> caches;  // (caches are neither copied nor moved)
    for (size_t s = 0; s < seqs.size(); ++s) caches.emplace_back(model.config(), 64, /*page_tokens=*/4);
    std::vector<std::vector<float>> got(seqs.size());
    std::vector<size_t> fed(seqs.size());
    std::vector<float> logits(seqs.size() * vocab);
    for (int step = 0; fed[0] < seqs[0].size(); ++step) {
      std::vector<Model::Chunk> chunks;
      for (size_t s = 0; s < seqs.size(); ++s) {
        const size_t n = step == 0 ? 2 + 2 * s : 1;
        if (fed[s] + n > seqs[s].size()) continue;
        chunks.push_back({seqs[s].data() + fed[s], static_cast<int64_t>(n), &caches[s]});
      }
      model.forward_batch(chunks, GetParam(), logits.data());
      size_t i = 0;
      for (size_t s = 0; s < seqs.size(); ++s) {
        const size_t n = step == 0 ? 2 + 2 * s : 1;
        if (fed[s] + n > seqs[s].size()) continue;
        fed[s] += n;
        got[s].insert(got[s].end(), logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
        ++i;
      }
    }
    for (size_t s = 0; s < seqs.size(); ++s) {
      EXPECT_EQ(caches[s].length(), static_cast<int64_t>(fed[s]));
      EXPECT_EQ(caches[s].reserved_tokens() % 4, 0);
      const auto ref = alone(model, std::vector<int32_t>(seqs[s].begin(), seqs[s].begin() + fed[s]));
      // Compare the rows we have: the last prefill row, then each decode row.
      const size_t first = 1 + 2 * s;
      const std::vector<float> expected(ref.begin() + first * vocab, ref.end());
      const auto diff = test::compare(got[s], expected);
      EXPECT_LE(diff.max_abs_diff, 1e-5f * diff.max_abs_ref) << name << " sequence " << s;
    }
  }
}

// Asking for the last row's logits only skips the last layer's FFN for the
// other rows (Model::forward); that row's logits stay those of the full run.
TEST_P(BatchedForward, LastRowLogitsAreThoseOfTheFullRun) {
  for (const char* name : {"v2_lite", "v3_fp8_yarn"}) {
    Model model(test::fixture(name));
    const int64_t vocab = model.config().vocab_size;
    const std::vector<int32_t> ids = {5, 9, 17, 3, 8, 2, 11, 40, 41, 7, 60, 7};
    const std::vector<float> all = alone(model, ids);
    LatentCache cache(model.config(), 64);
    std::vector<float> last(vocab);
    model.forward(ids.data(), static_cast<int64_t>(ids.size()), cache, GetParam(), last.data(), true);
    const auto diff = test::compare(last, std::vector<float>(all.end() - vocab, all.end()));
    EXPECT_LE(diff.max_abs_diff, 1e-5f * diff.max_abs_ref) << name;
    EXPECT_EQ(cache.length(), static_cast<int64_t>(ids.size()));
  }
}

// A prompt prefilled after a cached prefix (a chat's earlier turns, the
// server's prefix reuse) gets the logits of the whole prompt prefilled at once,
// whatever the prefix length: the rows then start off the absorbed attention's
// 8-row blocks, and a block can straddle two 128-position tiles. (Such a block
// used to give every logit NaN, which `dsv2 chat` showed as one token repeated.)
// A q8 cache goes through the same tiles over quantized rows (on AMX tiles
// where the CPU has them).
TEST_P(BatchedForward, PrefillAfterACachedPrefixMatchesTheWholePrefill) {
  Model model(test::fixture("v2_lite"));
  const int64_t vocab = model.config().vocab_size, total = 200;
  std::vector<int32_t> ids(total);
  for (int64_t i = 0; i < total; ++i) ids[i] = static_cast<int32_t>((i * 37 + 11) % vocab);
  for (CacheType type : {CacheType::kF32, CacheType::kQ8}) {
    LatentCache whole_cache(model.config(), total, 0, type);
    std::vector<float> whole(total * vocab);
    model.forward(ids.data(), total, whole_cache, GetParam(), whole.data());
    for (int64_t prefix : {1, 20, 64, 65}) {
      LatentCache cache(model.config(), total, 0, type);
      std::vector<float> logits(total * vocab);
      model.forward(ids.data(), prefix, cache, GetParam(), logits.data());
      model.forward(ids.data() + prefix, total - prefix, cache, GetParam(), logits.data() + prefix * vocab);
      // q8: rows quantized at different steps round differently (1e-4 of the range here; q8 itself moves it 3%).
      const float tolerance = type == CacheType::kF32 ? 1e-5f : 1e-3f;
      const auto diff = test::compare(logits, whole);
      EXPECT_LE(diff.max_abs_diff, tolerance * diff.max_abs_ref)
          << "prefix " << prefix << ", cache " << cache_type_name(type);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, BatchedForward, testing::Values(AttentionPath::kAbsorbed, AttentionPath::kNaive));

TEST(PagedLatentCache, GrowsByPagesUpToItsCapacity) {
  Model model(test::fixture("v2_lite"));
  LatentCache cache(model.config(), 10, 4);
  EXPECT_EQ(cache.reserved_tokens(), 0);
  cache.reserve(5);
  EXPECT_EQ(cache.reserved_tokens(), 8);
  cache.reserve(9);
  EXPECT_EQ(cache.reserved_tokens(), 10);  // the last page is cut at the capacity
  EXPECT_THROW(cache.reserve(11), Error);
}

}  // namespace
}  // namespace dsv2
