#include "train/grpo_trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "core/error.h"
#include "model/model.h"
#include "runtime/rollout.h"
#include "tokenizer/tokenizer.h"
#include "train/optimizer.h"
#include "train/training_model.h"
#include "train/weights_io.h"

namespace dsv2 {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void write_model(const TrainWeights& policy, const GrpoOptions& o) {
  save_model_dir(policy, o.out_dir, o.save_bf16);
  Tokenizer::copy_files(o.model_dir, o.out_dir);
}

}  // namespace

void run_grpo(const GrpoOptions& o, const std::vector<RlPrompt>& prompts, const Tokenizer& tokenizer, Reward& reward) {
  require(o.group >= 2 && o.steps >= 1 && o.prompts_per_step >= 1 && o.iterations >= 1 && o.max_new_tokens >= 1,
          "grpo: need a group of at least 2, steps, prompts per step, iterations and max_new_tokens >= 1");
  const Config config = load_config(o.model_dir);
  require(config.num_nextn_predict_layers == 0,
          o.model_dir + ": GRPO on models with MTP modules (num_nextn_predict_layers > 0) is not supported");
  // The policy (trained) and the reference (frozen): both float32 copies of the SFT model.
  TrainWeights policy(config), reference(config);
  load_train_weights(policy, o.model_dir);
  load_train_weights(reference, o.model_dir);
  // The sampler reads the policy's float32 buffers in place: after every
  // update it samples from the new weights, with nothing copied or written.
  Model sampler(config, policy.w());
  TrainingModel policy_model(policy, MoeTrainingOptions{}), reference_model(reference, MoeTrainingOptions{});
  AdamW adam(policy, AdamWOptions{0.9, 0.999, 1e-8, 0.0});  // TRL's (transformers') defaults: no weight decay

  RolloutOptions rollout;
  rollout.group = o.group;
  rollout.max_new_tokens = o.max_new_tokens;
  rollout.sampling.temperature = o.temperature;
  rollout.stop_ids = config.eos_token_ids;
  if (tokenizer.eos_id() >= 0) rollout.stop_ids.push_back(tokenizer.eos_id());
  const int32_t pad = tokenizer.pad_id() >= 0 ? tokenizer.pad_id() : std::max(0, tokenizer.eos_id());

  // Prompts in a seeded order, reshuffled at each pass over the file.
  std::mt19937_64 rng(o.seed);
  std::vector<size_t> order(prompts.size());
  size_t next = order.size();
  auto next_prompt = [&]() -> const RlPrompt& {
    if (next == order.size()) {
      std::iota(order.begin(), order.end(), size_t{0});
      std::shuffle(order.begin(), order.end(), rng);
      next = 0;
    }
    return prompts[order[next++]];
  };

  std::ofstream log;
  const bool tty = ::isatty(STDERR_FILENO);
  const int64_t P = o.prompts_per_step, G = o.group;
  const auto run_start = Clock::now();
  for (int64_t step = 0; step < o.steps; ++step) {
    const auto step_start = Clock::now();
    std::vector<const RlPrompt*> chosen;
    std::vector<std::vector<int32_t>> prompt_tokens;
    for (int64_t p = 0; p < P; ++p) {
      chosen.push_back(&next_prompt());
      prompt_tokens.push_back(chosen.back()->tokens);
    }

    // 1. Sampling, batched over all P·G completions, from the current policy.
    rollout.sampling.seed = o.seed * 1000003ull + static_cast<uint64_t>(step * P * G);
    RolloutStats sampled;
    const auto completions = sample_completions(sampler, prompt_tokens, rollout, &sampled);
    const double sampling_seconds = sampled.prefill_seconds + sampled.decode_seconds;

    // 2. Rewards and advantages.
    auto phase = Clock::now();
    const std::vector<RewardInput> inputs = reward_inputs(chosen, completions, tokenizer);
    const std::vector<double> rewards = reward.score(inputs);
    const std::vector<double> advantages = group_advantages(rewards, G);
    const double reward_seconds = seconds_since(phase);

    // 3. The reference model's log-probabilities (forward only).
    phase = Clock::now();
    std::vector<Batch> batches;
    std::vector<std::vector<GrpoToken>> terms(P);
    const TokenObjective record_only = [](int64_t, float) { return 0.0f; };
    reference_model.set_token_objective(&record_only);
    int64_t completion_tokens = 0;
    for (int64_t p = 0; p < P; ++p) {
      std::vector<std::vector<int32_t>> ids;
      for (const Completion& c : completions[p]) ids.push_back(c.tokens);
      batches.push_back(completion_batch(chosen[p]->tokens, ids, pad));
      const Batch& b = batches.back();
      const StepResult ref = reference_model.run(b, true, false);
      terms[p].resize(b.batch * b.seq_len);
      for (int64_t i = 0; i < b.batch; ++i) {
        const float weight = 1.0f / static_cast<float>(P * G * static_cast<int64_t>(ids[i].size()));
        completion_tokens += static_cast<int64_t>(ids[i].size());
        for (int64_t t = 0; t < b.seq_len; ++t) {
          GrpoToken& term = terms[p][i * b.seq_len + t];
          if (b.targets[i * b.seq_len + t] < 0) continue;
          term.weight = weight;
          term.advantage = static_cast<float>(advantages[p * G + i]);
          term.ref_logp = ref.token_logprobs[i * b.seq_len + t];
        }
      }
    }
    const double reference_seconds = seconds_since(phase);

    // 4. μ updates on these samples. The first pass's log-probabilities are
    // π_old's (the policy that sampled, up to the engines' rounding): its ratio is 1.
    double policy_seconds = 0.0, optimizer_seconds = 0.0, objective = 0.0, kl = 0.0, grad_norm = 0.0;
    int64_t clipped = 0, counted = 0;
    for (int64_t it = 0; it < o.iterations; ++it) {
      phase = Clock::now();
      policy.zero_grads();
      objective = 0.0;
      for (int64_t p = 0; p < P; ++p) {
        std::vector<GrpoToken>& rows = terms[p];
        const bool first = it == 0;
        const TokenObjective coefficient = [&rows, first, &o](int64_t row, float logp) {
          if (first) rows[row].old_logp = logp;
          return grpo_coefficient(rows[row], logp, o.objective);
        };
        policy_model.set_token_objective(&coefficient);
        const Batch& b = batches[p];
        const StepResult r = policy_model.run(b, true, true);
        for (int64_t i = 0; i < b.batch; ++i) {
          double completion_kl = 0.0;
          int64_t n = 0;
          for (int64_t t = 0; t < b.seq_len; ++t) {
            const int64_t row = i * b.seq_len + t;
            if (b.targets[row] < 0) continue;
            const float logp = r.token_logprobs[row];
            objective += grpo_token_value(rows[row], logp, o.objective);
            completion_kl += grpo_kl(rows[row].ref_logp, logp);
            clipped += grpo_clipped(rows[row], logp, o.objective);
            ++n, ++counted;
          }
          kl += completion_kl / n / (P * G * o.iterations);  // per-token average per completion, then the mean
        }
      }
      policy_seconds += seconds_since(phase);
      phase = Clock::now();
      grad_norm = clip_grad_norm(policy, o.clip_grad);
      adam.step(policy, o.lr);
      optimizer_seconds += seconds_since(phase);
    }

    // Metrics. reward_std: the mean over the groups of their std (TRL's).
    double reward_mean = 0.0, reward_std = 0.0;
    for (double r : rewards) reward_mean += r / rewards.size();
    for (int64_t p = 0; p < P; ++p) {
      double mean = 0.0, var = 0.0;
      for (int64_t i = 0; i < G; ++i) mean += rewards[p * G + i] / G;
      for (int64_t i = 0; i < G; ++i) var += (rewards[p * G + i] - mean) * (rewards[p * G + i] - mean) / (G - 1);
      reward_std += std::sqrt(var) / P;
    }
    if (!log.is_open()) {  // the first step got this far: inputs, sampling and the reward work
      fs::create_directories(o.out_dir);
      log.open((fs::path(o.out_dir) / "metrics.jsonl").string(), std::ios::trunc);
      if (!log) throw Error(o.out_dir + "/metrics.jsonl: cannot write");
    }
    const double step_seconds = seconds_since(step_start);
    const nlohmann::ordered_json line = {
        {"step", step}, {"reward_mean", reward_mean}, {"reward_std", reward_std}, {"kl", kl},
        {"clip_fraction", counted ? static_cast<double>(clipped) / counted : 0.0},
        {"objective", objective}, {"completion_tokens", completion_tokens},
        {"sampled_tokens_per_s", sampling_seconds > 0 ? sampled.sampled_tokens / sampling_seconds : 0.0},
        {"lr", o.lr}, {"grad_norm", grad_norm},
        {"seconds", {{"step", step_seconds}, {"sampling", sampling_seconds}, {"prefill", sampled.prefill_seconds},
                     {"reward", reward_seconds}, {"reference", reference_seconds}, {"policy", policy_seconds},
                     {"optimizer", optimizer_seconds}}}};
    log << line.dump() << "\n";
    log.flush();
    if (tty) {
      const double eta = seconds_since(run_start) / (step + 1) * (o.steps - step - 1);
      std::fprintf(stderr, "\rstep %lld/%lld  reward %.3f  kl %.4f  %.0f sampled tok/s  ETA %.0f s   ",
                   static_cast<long long>(step + 1), static_cast<long long>(o.steps), reward_mean, kl,
                   sampling_seconds > 0 ? sampled.sampled_tokens / sampling_seconds : 0.0, eta);
    }
    if (o.save_every > 0 && (step + 1) % o.save_every == 0 && step + 1 < o.steps) write_model(policy, o);
  }
  if (tty) std::fprintf(stderr, "\n");
  write_model(policy, o);
}

}  // namespace dsv2
