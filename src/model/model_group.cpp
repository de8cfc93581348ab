// A model split over the ranks of an MPI job: rank 0 announces each step
// (which tokens, which caches at which lengths) and the other ranks run it on
// their share of the weights, with mirrors of rank 0's latent caches.
#include <sys/resource.h>

#include <cstring>

#include "core/error.h"
#include "dist/communicator.h"
#include "model/model.h"

namespace dsv2 {

namespace {

enum Op : int32_t { kForward = 0, kForwardBatch = 1, kFill = 2, kStop = 3, kReport = 4 };

// One sequence of a step: enough for a follower to create or find its mirror.
struct ChunkRecord {
  uint64_t cache;
  int64_t tokens, length, capacity, page_tokens;
  int32_t cache_type, pad;
};

struct StepHeader {
  int32_t op, path;
  int64_t rows, chunks, ids, released, fill_begin;  // rows: Model::RowFlags
  uint64_t fill_seed;
};

}  // namespace

// What rank 0 broadcasts for a step: the header, its chunks, the caches it
// destroyed since the last step, then the token ids.
struct Model::Step {
  StepHeader header{};
  std::vector<ChunkRecord> chunks;
  std::vector<uint64_t> released;
  std::vector<int32_t> ids;

  std::string pack() const {
    std::string bytes(sizeof header + chunks.size() * sizeof(ChunkRecord) + released.size() * 8 + ids.size() * 4, '\0');
    char* p = bytes.data();
    auto put = [&p](const void* data, size_t n) {
      if (n > 0) std::memcpy(p, data, n), p += n;  // (an empty vector's data() may be null)
    };
    put(&header, sizeof header);
    put(chunks.data(), chunks.size() * sizeof(ChunkRecord));
    put(released.data(), released.size() * 8);
    put(ids.data(), ids.size() * 4);
    return bytes;
  }

  void unpack(const std::string& bytes) {
    const char* p = bytes.data();
    auto get = [&p](void* data, size_t n) {
      if (n > 0) std::memcpy(data, p, n), p += n;
    };
    get(&header, sizeof header);
    chunks.resize(header.chunks), released.resize(header.released), ids.resize(header.ids);
    get(chunks.data(), chunks.size() * sizeof(ChunkRecord));
    get(released.data(), released.size() * 8);
    get(ids.data(), ids.size() * 4);
  }
};

void Model::announce(int op, AttentionPath path, int64_t rows, int64_t fill_begin, uint64_t fill_seed) {
  Step step;
  step.header = {op, static_cast<int32_t>(path), rows, static_cast<int64_t>(spans_.size()),
                 static_cast<int64_t>(batch_ids_.size()), 0, fill_begin, fill_seed};
  for (const SequenceSpan& span : spans_) {
    const LatentCache& cache = *span.cache;
    cache.set_mirrored();
    step.chunks.push_back({cache.id(), span.tokens, cache.length(), cache.capacity(), cache.page_tokens(),
                           static_cast<int32_t>(cache.type()), 0});
  }
  step.released = take_released_cache_ids();
  step.header.released = static_cast<int64_t>(step.released.size());
  step.ids = batch_ids_;
  std::string bytes = step.pack();
  plan_.group->broadcast(bytes, 0);
}

void Model::follow() {
  require(plan_.split() && is_follower(), "follow: only the other ranks of a split model follow rank 0");
  Step step;
  std::vector<Chunk> chunks;
  for (;;) {
    std::string bytes;
    plan_.group->broadcast(bytes, 0);
    step.unpack(bytes);
    if (step.header.op == kStop) return;
    for (uint64_t id : step.released) mirrors_.erase(id);
    // Rank 0 checked the step before announcing it; the mirrors take its caches' state.
    chunks.clear();
    int64_t at = 0;
    for (const ChunkRecord& r : step.chunks) {
      std::unique_ptr<LatentCache>& mirror = mirrors_[r.cache];
      if (!mirror)
        mirror = std::make_unique<LatentCache>(config_, r.capacity, r.page_tokens, static_cast<CacheType>(r.cache_type));
      mirror->set_length(r.length);
      chunks.push_back({step.ids.data() + at, r.tokens, mirror.get()});
      at += r.tokens;
    }
    const auto path = static_cast<AttentionPath>(step.header.path);
    switch (step.header.op) {
      case kForward:
        forward_tokens(chunks[0].ids, chunks[0].tokens, *chunks[0].cache, path, nullptr, (step.header.rows & kLastOnly) != 0,
                       nullptr, (step.header.rows & kLastRowsOnly) != 0);
        break;
      case kForwardBatch:
        forward_chunks(chunks, path, nullptr, nullptr, (step.header.rows & kLastRowsOnly) != 0);
        break;
      case kFill:
        fill_latents(*chunks[0].cache, step.header.fill_begin, step.header.fill_begin + chunks[0].tokens,
                     step.header.fill_seed);
        break;
      case kReport:
        rank_reports();
        break;
      default:
        throw Error("follow: unknown step from rank 0");
    }
  }
}

std::vector<Model::RankReport> Model::rank_reports() {
  if (plan_.split() && !is_follower()) {
    batch_ids_.clear(), spans_.clear();
    announce(kReport, AttentionPath::kAbsorbed, 0);
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const dist::Traffic& traffic = dist::traffic();
  const RankReport mine{static_cast<int64_t>(usage.ru_maxrss) * 1024, traffic.all_to_all + traffic.collective, expert_work_};
  if (!plan_.split()) return {mine};
  std::vector<RankReport> all;
  for (const std::string& bytes : plan_.group->gather(&mine, sizeof mine, 0)) {
    all.emplace_back();
    std::memcpy(&all.back(), bytes.data(), sizeof mine);
  }
  return all;
}

Model::~Model() {
  if (!plan_.split() || is_follower()) return;
  // Releases the followers: after this rank 0 announces nothing more.
  Step stop;
  stop.header.op = kStop;
  std::string bytes = stop.pack();
  plan_.group->broadcast(bytes, 0);
}

}  // namespace dsv2
