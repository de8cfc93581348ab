#include "runtime/generator.h"

#include <algorithm>

#include "core/error.h"

namespace dsv2 {

int64_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  int64_t n = 0;
  while (n < static_cast<int64_t>(a.size()) && n < static_cast<int64_t>(b.size()) && a[n] == b[n]) ++n;
  return n;
}

std::vector<int32_t> generate(Model& model, LatentCache& cache, const std::vector<int32_t>& prompt, int64_t cached,
                              const GenerationOptions& options, const std::function<bool(int32_t)>& on_token) {
  require(!prompt.empty(), "generate: empty prompt");
  // Keep at least the last prompt token to compute: its logits start the generation.
  cached = std::min<int64_t>(cached, static_cast<int64_t>(prompt.size()) - 1);
  require(static_cast<int64_t>(prompt.size()) + options.max_tokens <= cache.capacity(),
          "prompt of " + std::to_string(prompt.size()) + " tokens plus " + std::to_string(options.max_tokens) +
              " new tokens exceeds the context of " + std::to_string(cache.capacity()));
  cache.set_length(cached);
  const int64_t vocab = model.config().vocab_size;
  std::vector<float> logits(vocab);
  model.forward(prompt.data() + cached, static_cast<int64_t>(prompt.size()) - cached, cache, options.path, logits.data(), true);
  Sampler sampler(options.sampling, vocab);
  sampler.add_context(prompt.data(), static_cast<int64_t>(prompt.size()));
  std::vector<int32_t> out;
  for (int64_t i = 0; i < options.max_tokens; ++i) {
    const int32_t next = sampler.sample(logits.data());
    out.push_back(next);
    const bool stop = !options.ignore_stop && std::find(options.stop_ids.begin(), options.stop_ids.end(), next) != options.stop_ids.end();
    if (!on_token(next) || stop || i + 1 == options.max_tokens) break;
    model.forward(&next, 1, cache, options.path, logits.data(), true);
  }
  return out;
}

}  // namespace dsv2
