#include "runtime/speculative_bench.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <random>

namespace dsv2 {

namespace {
double seconds(const std::function<void()>& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Wall and CPU seconds of each run of one step.
struct Runs {
  std::vector<double> wall, cpu;
  void time(const std::function<void()>& run) {
    const double cpu0 = cpu_seconds();
    wall.push_back(seconds(run));
    cpu.push_back(cpu_seconds() - cpu0);
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

SpeculativeBench bench_speculative(Model& model, const BenchOptions& o, int64_t draft, int64_t runs) {
  MtpModule mtp(model);
  const Config& c = model.config();
  std::mt19937_64 rng(o.seed);
  auto random_ids = [&](int64_t n) {
    std::vector<int32_t> ids(n);
    for (auto& id : ids) id = static_cast<int32_t>(rng() % c.vocab_size);
    return ids;
  };
  const std::vector<int32_t> prompt = random_ids(o.prompt);
  GenerationOptions g;
  g.max_tokens = o.generate;
  g.sampling.temperature = 0.0f;
  g.ignore_stop = true;
  const int64_t capacity = o.prompt + o.generate + draft + 1;
  LatentCache cache(c, capacity, 0, o.cache_type);
  auto mtp_cache = mtp.make_cache(capacity, o.cache_type);
  SpeculativeBench b;
  const auto keep = [](int32_t) { return true; };
  b.greedy_tokens_per_s = o.generate / seconds([&] { generate(model, cache, prompt, 0, g, keep); });
  SpeculativeOptions s;
  s.draft = draft;
  b.speculative_tokens_per_s =
      o.generate / seconds([&] { generate_speculative(model, mtp, cache, *mtp_cache, prompt, g, s, keep, &b.stats); });

  // The three steps at the position after the prompt, each rolled back after it ran; new random
  // tokens every run (other routed experts), the order rotated so that none always runs first.
  const int64_t d = c.hidden_size;
  std::vector<float> logits((draft + 1) * c.vocab_size), hidden(o.prompt * d), mtp_logits(c.vocab_size);
  std::vector<float> verify_hidden((draft + 1) * d);  // as generate_speculative's verification keeps them
  cache.set_length(0);
  mtp_cache->set_length(0);
  model.forward(prompt.data(), o.prompt, cache, AttentionPath::kAbsorbed, logits.data(), true, hidden.data());
  std::vector<int32_t> next(prompt.begin() + 1, prompt.end());
  next.push_back(random_ids(1)[0]);
  mtp.forward(hidden.data(), next.data(), o.prompt, *mtp_cache, AttentionPath::kAbsorbed, mtp_logits.data(), true);
  const int64_t P = o.prompt;
  Runs step_1, verify, draft_row;
  for (int64_t run = 0; run < runs; ++run) {
    const std::vector<int32_t> ids = random_ids(draft + 1);
    const std::function<void()> steps[3] = {
        [&] {
          step_1.time([&] { model.forward(ids.data(), 1, cache, AttentionPath::kAbsorbed, logits.data()); });
          cache.set_length(P);
        },
        [&] {
          verify.time([&] {
            model.forward(ids.data(), draft + 1, cache, AttentionPath::kAbsorbed, logits.data(), false,
                          verify_hidden.data());
          });
          cache.set_length(P);
        },
        [&] {
          draft_row.time([&] {
            mtp.forward(hidden.data() + (P - 1) * d, &ids[0], 1, *mtp_cache, AttentionPath::kAbsorbed, mtp_logits.data());
          });
          mtp_cache->set_length(P);
        }};
    for (int k = 0; k < 3; ++k) steps[(run + k) % 3]();
  }
  b.step_1_s = median(step_1.wall);
  b.verify_s = median(verify.wall);
  b.mtp_s = median(draft_row.wall);
  b.step_1_cpu_s = median(step_1.cpu);
  b.verify_cpu_s = median(verify.cpu);
  b.mtp_cpu_s = median(draft_row.cpu);
  b.step_runs = runs;
  return b;
}

double implied_speedup(const SpeculativeBench& b, int64_t draft, double a) {
  const double tokens = a >= 1.0 ? static_cast<double>(draft + 1) : (1.0 - std::pow(a, draft + 1)) / (1.0 - a);
  return tokens / ((b.verify_s + draft * b.mtp_s) / b.step_1_s);
}

}  // namespace dsv2
