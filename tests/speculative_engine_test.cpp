// The server's engine with the MTP drafter (dsv2 serve --speculative mtp) on the
// fixture with an MTP layer (tests/fixtures/v3_mtp): greedy answers equal the
// plain engine's whether a sequence runs alone (speculative steps) or with
// others (batched steps, the MTP module catching up in between), with drafts
// as the random MTP layer makes them (nearly all rejected) and mostly right
// ones from a test hook (acceptance, partial acceptance, a stop token among
// accepted drafts), across prefix reuse; log-probabilities equal too.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>

#include "model/mtp.h"
#include "server/engine.h"
#include "test_util.h"

namespace dsv2 {
namespace {

using Tokens = std::vector<int32_t>;

Tokens random_prompt(int len, uint32_t seed) {
  std::mt19937 rng(seed);
  Tokens p(len);
  for (auto& id : p) id = static_cast<int32_t>(2 + rng() % 126);  // the fixture's vocabulary is 128
  return p;
}

std::shared_ptr<GenerationJob> make_job(const Tokens& prompt, int64_t max_tokens, Tokens stop_ids = {}) {
  auto job = std::make_shared<GenerationJob>();
  job->prompt = prompt;
  job->max_tokens = max_tokens;
  job->sampling.temperature = 0.0f;
  job->stop_ids.assign(stop_ids.begin(), stop_ids.end());
  return job;
}

void wait(GenerationJob& job) {
  std::unique_lock lock(job.mutex);
  job.changed.wait(lock, [&] { return job.done; });
}

// Jobs for the prompts; together, their lengths differ (6, 9, ... tokens) so that the batch
// shrinks to one sequence that then drafts, its MTP module having caught up with the batched steps.
std::vector<std::shared_ptr<GenerationJob>> make_jobs(const std::vector<Tokens>& prompts, int64_t max_tokens, bool together) {
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  for (size_t i = 0; i < prompts.size(); ++i)
    jobs.push_back(make_job(prompts[i], together ? std::min<int64_t>(max_tokens, 6 + 3 * static_cast<int64_t>(i)) : max_tokens));
  return jobs;
}

std::vector<Tokens> truncated(std::vector<Tokens> reference, const std::vector<std::shared_ptr<GenerationJob>>& jobs) {
  for (size_t i = 0; i < reference.size(); ++i) reference[i].resize(static_cast<size_t>(jobs[i]->max_tokens));
  return reference;
}

// Submits the jobs all at once (they batch) or one after another (each runs alone); returns their tokens.
std::vector<Tokens> run(Engine& engine, const std::vector<std::shared_ptr<GenerationJob>>& jobs, bool together) {
  for (const auto& job : jobs) {
    EXPECT_TRUE(engine.submit(job));
    if (!together) wait(*job);
  }
  std::vector<Tokens> out;
  for (const auto& job : jobs) {
    wait(*job);
    EXPECT_TRUE(job->error.empty()) << job->error;
    out.push_back(job->tokens);
  }
  return out;
}

class SpeculativeEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(test::fixture("v3_mtp"));
    mtp_ = std::make_unique<MtpModule>(*model_);
    for (int i = 0; i < 6; ++i) prompts_.push_back(random_prompt(3 + 7 * i, 11 + i));
  }
  EngineOptions options(bool drafting, int64_t draft = 2) {
    EngineOptions o;
    o.parallel = 3;
    o.context = 128;
    o.prefill_chunk = 8;  // prompts over several steps, and the MTP module catching up in chunks
    o.cache_page = 16;
    if (drafting) o.drafter = mtp_.get(), o.draft = draft;
    return o;
  }
  std::vector<Tokens> plain(const std::vector<Tokens>& prompts, int64_t max_tokens) {
    Engine engine(*model_, options(false));
    std::vector<std::shared_ptr<GenerationJob>> jobs;
    for (const auto& p : prompts) jobs.push_back(make_job(p, max_tokens));
    return run(engine, jobs, false);
  }
  // A hook putting the reference continuation in the drafts, every third position spoilt.
  std::function<void(const GenerationJob&, int64_t, Tokens&)> mostly_right(const std::vector<Tokens>& reference) {
    std::map<Tokens, Tokens> full;
    for (size_t i = 0; i < prompts_.size(); ++i) {
      Tokens f = prompts_[i];
      f.insert(f.end(), reference[i].begin(), reference[i].end());
      full[prompts_[i]] = f;
    }
    return [full](const GenerationJob& job, int64_t position, Tokens& drafts) {
      const Tokens& f = full.at(job.prompt);
      for (size_t k = 0; k < drafts.size(); ++k) {
        const size_t p = static_cast<size_t>(position) + k;
        if (p < f.size()) drafts[k] = p % 3 == 0 ? (f[p] + 1) % 128 : f[p];
      }
    };
  }
  std::unique_ptr<Model> model_;
  std::unique_ptr<MtpModule> mtp_;
  std::vector<Tokens> prompts_;
};

TEST_F(SpeculativeEngine, GreedyEqualsPlainAloneAndBatched) {
  const std::vector<Tokens> reference = plain(prompts_, 20);
  for (int64_t draft : {1, 3}) {
    for (bool together : {false, true}) {
      Engine engine(*model_, options(true, draft));
      const auto jobs = make_jobs(prompts_, 20, together);
      EXPECT_EQ(run(engine, jobs, together), truncated(reference, jobs))
          << "draft " << draft << (together ? ", together" : ", alone");
      EXPECT_GT(engine.stats().speculative_steps, 0);
      EXPECT_GT(engine.stats().drafted_tokens, 0);
    }
  }
}

TEST_F(SpeculativeEngine, MostlyRightDraftsAreAcceptedAndRolledBack) {
  const std::vector<Tokens> reference = plain(prompts_, 24);
  for (bool together : {false, true}) {
    EngineOptions o = options(true, 3);
    o.edit_drafts = mostly_right(reference);
    Engine engine(*model_, o);
    const auto jobs = make_jobs(prompts_, 24, together);
    EXPECT_EQ(run(engine, jobs, together), truncated(reference, jobs)) << (together ? "together" : "alone");
    const EngineStats st = engine.stats();
    EXPECT_GT(st.accepted_tokens, st.drafted_tokens / 4);  // two of three drafts are right
    EXPECT_LT(st.accepted_tokens, st.drafted_tokens);
    // Fewer steps than tokens: accepted drafts came with the verification.
    if (!together) {
      EXPECT_LT(st.speculative_steps, st.generated_tokens - static_cast<int64_t>(prompts_.size()));
    }
  }
}

// A stop token that arrives as an accepted draft ends the answer there; the cache it leaves is
// reused by the next request (its prefix), whose answer is still plain greedy's.
TEST_F(SpeculativeEngine, StopAmongAcceptedDraftsAndPrefixReuse) {
  const Tokens prompt = prompts_[3];
  const Tokens reference = plain({prompt}, 24)[0];
  // A token first seen at least 6 tokens in, so that the reused prefix reaches past the prompt.
  size_t end = 6;
  while (end + 1 < reference.size() && std::find(reference.begin(), reference.begin() + end, reference[end]) !=
                                           reference.begin() + end)
    ++end;
  const int32_t stop = reference[end];
  const Tokens stopped(reference.begin(), reference.begin() + static_cast<std::ptrdiff_t>(end) + 1);
  Tokens follow_up = prompt;
  follow_up.insert(follow_up.end(), stopped.begin(), stopped.end());
  for (int32_t id : random_prompt(5, 99)) follow_up.push_back(id);
  const Tokens expected_follow_up = plain({follow_up}, 16)[0];

  EngineOptions o = options(true, 3);
  o.edit_drafts = [&](const GenerationJob& job, int64_t position, Tokens& drafts) {
    if (job.prompt != prompt) return;
    for (size_t k = 0; k < drafts.size(); ++k)
      if (position + static_cast<int64_t>(k) - static_cast<int64_t>(prompt.size()) < static_cast<int64_t>(reference.size()))
        drafts[k] = reference[position + k - prompt.size()];
  };
  Engine engine(*model_, o);
  auto first = make_job(prompt, 24, {stop});
  EXPECT_EQ(run(engine, {first}, false)[0], stopped);
  EXPECT_EQ(first->finish_reason, "stop");
  auto second = make_job(follow_up, 16);
  EXPECT_EQ(run(engine, {second}, false)[0], expected_follow_up);
  EXPECT_GT(second->reused_prompt_tokens, static_cast<int64_t>(prompt.size()));
}

TEST_F(SpeculativeEngine, LogprobsEqualPlain) {
  auto with_logprobs = [&](bool drafting) {
    Engine engine(*model_, options(drafting));
    auto job = make_job(prompts_[2], 12);
    job->top_logprobs = 3;
    run(engine, {job}, false);
    return job->logprobs;
  };
  const auto a = with_logprobs(false), b = with_logprobs(true);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].token, b[i].token);
    EXPECT_NEAR(a[i].logprob, b[i].logprob, 1e-4);
    ASSERT_EQ(a[i].top.size(), b[i].top.size());
  }
}

TEST_F(SpeculativeEngine, SamplingRunsToTheLimit) {
  Engine engine(*model_, options(true, 2));
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  for (int i = 0; i < 3; ++i) {
    jobs.push_back(make_job(prompts_[i], 15));
    jobs.back()->sampling.temperature = 0.9f;
    jobs.back()->sampling.top_p = 0.9f;
    jobs.back()->sampling.seed = 5 + i;
  }
  for (const Tokens& out : run(engine, jobs, true)) EXPECT_EQ(out.size(), 15u);
}

}  // namespace
}  // namespace dsv2
