// Picks the next token from logits: greedy at temperature 0, otherwise
// temperature → top-k → top-p (nucleus) → a draw from a seeded generator, so a
// given seed always yields the same text.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace dsv2 {

struct SamplingOptions {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;        // (0, 1]
  int64_t top_k = 0;         // 0: no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  int32_t sample(const float* logits, int64_t vocab_size);

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

// Index of the largest value; the lowest index wins ties.
int32_t argmax(const float* values, int64_t n);

}  // namespace dsv2
