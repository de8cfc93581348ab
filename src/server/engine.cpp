#include "server/engine.h"

#include <algorithm>

#include "runtime/generator.h"
#include "runtime/speculative.h"

namespace dsv2 {

struct Engine::Sequence {
  std::shared_ptr<GenerationJob> job;
  std::unique_ptr<LatentCache> cache, mtp_cache;  // mtp_cache: with a drafter
  std::vector<int32_t> in_cache;  // tokens the cache holds
  int64_t prompt_fed = 0;         // prompt tokens in the cache
  int32_t next = -1;              // sampled, not yet fed
  Sampler sampler;
  // With a drafter (not for scored prompts, which never leave the plain path).
  std::unique_ptr<SpeculativeDecoder> decoder;
  std::vector<float> hidden;  // the main model's hidden states at positions mtp_cache->length().., not yet read
  bool finished = false;

  // The job's sampling options were validated when it was made (a throw here would end the engine thread).
  Sequence(std::shared_ptr<GenerationJob> j, std::unique_ptr<LatentCache> c, int64_t vocab_size)
      : job(std::move(j)), cache(std::move(c)), sampler(job->sampling, vocab_size) {
    sampler.add_context(job->prompt.data(), static_cast<int64_t>(job->prompt.size()));
  }
  bool prefilling() const { return prompt_fed < static_cast<int64_t>(job->prompt.size()); }
};

Engine::Engine(Model& model, EngineOptions options) : model_(model), options_(options) {
  thread_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

bool Engine::submit(const std::shared_ptr<GenerationJob>& job) {
  {
    std::lock_guard lock(mutex_);
    // Refuse only when every slot is taken and max_queue requests already wait.
    const int64_t waiting = static_cast<int64_t>(queue_.size());
    if (stopping_ || (waiting >= options_.max_queue && stats_.active + waiting >= options_.parallel)) return false;
    job->submitted = std::chrono::steady_clock::now();
    queue_.push_back(job);
    stats_.queued = static_cast<int64_t>(queue_.size());
  }
  wake_.notify_all();
  return true;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

// Gives each new job a cache: the idle one sharing the longest prefix with its
// prompt (at least one prompt token is always computed: its logits start the
// generation), else a fresh one.
void Engine::admit(std::vector<std::shared_ptr<GenerationJob>>& incoming) {
  for (auto& job : incoming) {
    const bool drafting = options_.drafter && !job->score_prompt;
    size_t best = idle_.size();
    int64_t best_shared = 0;
    // A scored prompt needs every row's logits: nothing of it may come from a cache.
    const int64_t limit = job->score_prompt ? 0 : static_cast<int64_t>(job->prompt.size()) - 1;
    for (size_t i = 0; i < idle_.size(); ++i) {
      int64_t shared = std::min(common_prefix(idle_[i].tokens, job->prompt), limit);
      // MTP row p pairs position p with token p+1, which must be shared too; the main cache reuses
      // no more than that, so that the prefill yields the hidden states of every row the MTP lacks.
      if (drafting) shared = idle_[i].mtp_cache ? std::min(shared - 1, idle_[i].mtp_cache->length()) : 0;
      if (shared > best_shared) best = i, best_shared = shared;
    }
    std::unique_ptr<LatentCache> cache, mtp_cache;
    if (best < idle_.size()) {
      cache = std::move(idle_[best].cache);
      mtp_cache = std::move(idle_[best].mtp_cache);
      idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(best));
      cache->set_length(best_shared);
    } else {
      cache = std::make_unique<LatentCache>(model_.config(), options_.context, options_.cache_page, options_.cache_type);
      best_shared = 0;
    }
    if (drafting && !mtp_cache) mtp_cache = options_.drafter->make_cache(options_.context, options_.cache_type, options_.cache_page);
    if (mtp_cache) mtp_cache->set_length(drafting ? best_shared : 0);
    auto s = std::make_unique<Sequence>(job, std::move(cache), model_.config().vocab_size);
    s->mtp_cache = std::move(mtp_cache);
    if (drafting) {
      SpeculativeOptions speculative;
      speculative.draft = options_.draft;
      if (options_.edit_drafts)
        speculative.edit_drafts = [hook = options_.edit_drafts, raw = job.get()](int64_t position, std::vector<int32_t>& d) {
          hook(*raw, position, d);
        };
      s->decoder = std::make_unique<SpeculativeDecoder>(model_, *options_.drafter, *s->cache, *s->mtp_cache, s->sampler,
                                                        job->sampling, AttentionPath::kAbsorbed, speculative);
    }
    s->prompt_fed = best_shared;
    s->in_cache.assign(job->prompt.begin(), job->prompt.begin() + best_shared);
    {
      std::lock_guard lock(job->mutex);
      job->reused_prompt_tokens = best_shared;
    }
    std::lock_guard lock(mutex_);
    stats_.prompt_tokens += static_cast<int64_t>(job->prompt.size());
    stats_.reused_prompt_tokens += best_shared;
    active_.push_back(std::move(s));
  }
  incoming.clear();
}

void Engine::finish(Sequence& s, const std::string& reason, const std::string& error) {
  s.finished = true;
  {
    std::lock_guard lock(s.job->mutex);
    s.job->done = true;
    s.job->finish_reason = reason;
    s.job->error = error;
    s.job->finished = std::chrono::steady_clock::now();
  }
  s.job->changed.notify_all();
  if (!error.empty() || !s.cache) return;
  // Keep the cache for a later prompt with the same beginning; drop the oldest.
  const int64_t held = static_cast<int64_t>(s.in_cache.size());
  s.cache->set_length(held);
  if (s.mtp_cache) s.mtp_cache->set_length(std::min(s.mtp_cache->length(), held));
  idle_.push_back({std::move(s.cache), std::move(s.mtp_cache), std::move(s.in_cache)});
  if (static_cast<int64_t>(idle_.size()) > options_.idle_caches) idle_.erase(idle_.begin());
}

void Engine::score_prompt_chunk(Sequence& s) {
  GenerationJob& job = *s.job;
  const int64_t vocab = model_.config().vocab_size, size = static_cast<int64_t>(job.prompt.size());
  const int64_t begin = s.prompt_fed, n = std::min<int64_t>(options_.prefill_chunk, size - begin);
  prompt_logits_.resize(static_cast<size_t>(n * vocab));
  try {
    model_.forward(job.prompt.data() + begin, n, *s.cache, AttentionPath::kAbsorbed, prompt_logits_.data());
  } catch (const std::exception& e) {
    finish(s, "error", e.what());
    return;
  }
  s.in_cache.insert(s.in_cache.end(), job.prompt.begin() + begin, job.prompt.begin() + begin + n);
  s.prompt_fed += n;
  std::vector<TokenLogprob> scored;
  for (int64_t t = 0; t < n && begin + t + 1 < size; ++t)
    scored.push_back(
        token_logprob(prompt_logits_.data() + t * vocab, vocab, job.prompt[begin + t + 1], job.top_logprobs));
  {
    std::lock_guard lock(job.mutex);
    job.prompt_logprobs.insert(job.prompt_logprobs.end(), scored.begin(), scored.end());
    job.prompt_scored = !s.prefilling();
  }
  job.changed.notify_all();
  const bool generated = !s.prefilling() && deliver(s, prompt_logits_.data() + (n - 1) * vocab);
  std::lock_guard lock(mutex_);
  ++stats_.steps;
  stats_.batched_rows += n;
  stats_.generated_tokens += generated;
}

bool Engine::deliver(Sequence& s, const float* row) {
  if (s.job->max_tokens == 0) {  // echo with max_tokens 0: the prompt only
    finish(s, "length");
    return false;
  }
  s.next = s.sampler.sample(row);
  if (const char* reason = publish(s, s.next, row, s.cache->length())) finish(s, reason);
  return true;
}

const char* Engine::publish(Sequence& s, int32_t token, const float* row, int64_t position) {
  GenerationJob& job = *s.job;
  TokenLogprob logprob;
  if (job.top_logprobs >= 0) logprob = token_logprob(row, model_.config().vocab_size, token, job.top_logprobs);
  const bool stop = std::find(job.stop_ids.begin(), job.stop_ids.end(), token) != job.stop_ids.end();
  int64_t count;
  {
    std::lock_guard lock(job.mutex);
    if (job.tokens.empty()) job.first_token = std::chrono::steady_clock::now();
    job.tokens.push_back(token);
    if (job.top_logprobs >= 0) job.logprobs.push_back(std::move(logprob));
    count = static_cast<int64_t>(job.tokens.size());
  }
  job.changed.notify_all();
  if (stop) return "stop";
  if (count >= job.max_tokens || position + 1 > s.cache->capacity()) return "length";
  return nullptr;
}

void Engine::catch_up(Sequence& s) {
  const int64_t d = model_.config().hidden_size, rows = static_cast<int64_t>(s.hidden.size()) / d;
  if (!s.decoder || rows == 0 || s.finished) return;
  // Row p pairs position p with the token at p+1: the prompt's, or the sampled one after the last fed position.
  const int64_t first = s.mtp_cache->length();
  std::vector<int32_t> next(s.in_cache.begin() + first + 1, s.in_cache.end());
  next.push_back(s.prefilling() ? s.job->prompt[s.prompt_fed] : s.next);
  try {
    s.decoder->catch_up(s.hidden.data(), next.data(), rows);
  } catch (const std::exception& e) {
    finish(s, "error", e.what());
  }
  s.hidden.clear();
}

void Engine::speculative_step(Sequence& s) {
  catch_up(s);
  if (s.finished) return;
  GenerationJob& job = *s.job;
  const int64_t before = static_cast<int64_t>(job.tokens.size());  // the engine thread is the only writer
  int64_t position = s.cache->length();  // of the pending token, s.next
  const char* reason = nullptr;
  SpeculativeStats st;
  try {
    s.decoder->step(job.max_tokens - before, [&](int32_t token, const float* row) {
      reason = publish(s, token, row, ++position);
      return reason == nullptr;
    }, st);
  } catch (const std::exception& e) {
    finish(s, "error", e.what());
    return;
  }
  // The cache now holds the old pending token and the accepted drafts: all new tokens but the last.
  const int64_t generated = static_cast<int64_t>(job.tokens.size()) - before;
  s.in_cache.push_back(s.next);
  s.in_cache.insert(s.in_cache.end(), job.tokens.end() - generated, job.tokens.end() - 1);
  s.next = job.tokens.back();
  if (reason) finish(s, reason);
  std::lock_guard lock(mutex_);
  ++stats_.steps;
  stats_.batched_rows += st.drafted + 1;
  stats_.generated_tokens += generated;
  ++stats_.speculative_steps;
  stats_.drafted_tokens += st.drafted;
  stats_.accepted_tokens += st.accepted;
}

void Engine::step() {
  std::vector<Model::Chunk> chunks;
  std::vector<Sequence*> in_batch;
  for (auto& s : active_) {
    if (s->job->cancelled.load()) {
      finish(*s, "cancelled");
      continue;
    }
    if (s->decoder && !s->prefilling() && active_.size() == 1) {
      speculative_step(*s);  // alone: drafts verified in one forward instead of one token
      continue;
    }
    if (s->job->score_prompt && s->prefilling()) {
      score_prompt_chunk(*s);  // its own call: forward_batch keeps only each sequence's last row
      continue;
    }
    if (s->prefilling()) {
      const int64_t n = std::min<int64_t>(options_.prefill_chunk, static_cast<int64_t>(s->job->prompt.size()) - s->prompt_fed);
      chunks.push_back({s->job->prompt.data() + s->prompt_fed, n, s->cache.get()});
    } else {
      chunks.push_back({&s->next, 1, s->cache.get()});
    }
    in_batch.push_back(s.get());
  }
  if (!chunks.empty()) {
    const int64_t vocab = model_.config().vocab_size, d = model_.config().hidden_size;
    logits_.resize(chunks.size() * vocab);
    // Drafting sequences keep every row's hidden state for their MTP module.
    int64_t total = 0;
    bool drafting = false;
    for (size_t i = 0; i < chunks.size(); ++i) total += chunks[i].tokens, drafting = drafting || in_batch[i]->decoder;
    if (drafting) hidden_.resize(total * d);
    try {
      model_.forward_batch(chunks, AttentionPath::kAbsorbed, logits_.data(), drafting ? hidden_.data() : nullptr);
    } catch (const std::exception& e) {
      for (Sequence* s : in_batch) finish(*s, "error", e.what());
      in_batch.clear();
    }
    int64_t rows = 0, generated = 0;
    for (size_t i = 0; i < in_batch.size(); ++i) {
      Sequence& s = *in_batch[i];
      const Model::Chunk& c = chunks[i];
      if (s.decoder) s.hidden.insert(s.hidden.end(), hidden_.begin() + rows * d, hidden_.begin() + (rows + c.tokens) * d);
      rows += c.tokens;
      s.in_cache.insert(s.in_cache.end(), c.ids, c.ids + c.tokens);
      if (s.prefilling()) s.prompt_fed += c.tokens;
      // The logits of a prompt chunk with more prompt to go are not needed.
      if (!s.prefilling()) generated += deliver(s, logits_.data() + i * vocab);
      // Bounded: the MTP module reads in chunks while the batch goes on.
      if (static_cast<int64_t>(s.hidden.size()) >= options_.prefill_chunk * d) catch_up(s);
    }
    std::lock_guard lock(mutex_);
    ++stats_.steps;
    stats_.batched_rows += rows;
    stats_.generated_tokens += generated;
  }
  active_.erase(std::remove_if(active_.begin(), active_.end(), [](const auto& s) { return s->finished; }), active_.end());
}

void Engine::run() {
  std::vector<std::shared_ptr<GenerationJob>> incoming;
  while (true) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !active_.empty(); });
      if (stopping_) break;
      while (!queue_.empty() && static_cast<int64_t>(active_.size() + incoming.size()) < options_.parallel) {
        incoming.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queued = static_cast<int64_t>(queue_.size());
    }
    admit(incoming);
    step();
    int64_t bytes = 0;
    for (const auto& s : active_) bytes += s->cache->reserved_bytes();
    for (const auto& c : idle_) bytes += c.cache->reserved_bytes();
    std::lock_guard lock(mutex_);
    stats_.active = static_cast<int64_t>(active_.size());
    stats_.idle_caches = static_cast<int64_t>(idle_.size());
    stats_.cache_bytes = bytes;
  }
  // Shutting down: whoever still waits gets an answer.
  for (auto& s : active_) finish(*s, "cancelled");
  std::lock_guard lock(mutex_);
  for (auto& job : queue_) {
    std::lock_guard job_lock(job->mutex);
    job->done = true;
    job->finish_reason = "cancelled";
    job->changed.notify_all();
  }
}

}  // namespace dsv2
