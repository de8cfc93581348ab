// Multi-head Latent Attention, following DeepSeek-V2 §2.1.2-2.1.3 (equation
// numbers from the paper's main text). Notation: d_c = kv_lora_rank, d_n = qk_nope_head_dim,
// d_R = qk_rope_head_dim, d_v = v_head_dim, n_h = num_attention_heads.
#include "model/mla.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "core/parallel.h"
#include "ops/amx.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/matmul.h"

namespace dsv2 {

namespace {

enum Slot : size_t {
  kQueryLatent, kQuery, kKvA, kHeadsOut, kExpandedKv, kAbsorbedQuery, kOutputLatent, kAttentionState, kNormedLatent,
  kAllHeadsOut, kOutputRows
};

// `heads`: the heads this process attends with (all of them unless the model is split over ranks).
struct Dims {
  int64_t heads, nope, rope, v, latent, qk;
  Dims(const Config& c, int64_t local_heads)
      : heads(local_heads), nope(c.qk_nope_head_dim), rope(c.qk_rope_head_dim), v(c.v_head_dim),
        latent(c.kv_lora_rank), qk(c.qk_head_dim()) {}
};

// Where one batch row sits: its position and its sequence's cache.
struct RowContext {
  int64_t position;
  LatentCache* cache;
};

// Cached positions per tile of both paths: 128 rows of [c_kv ; k_R] converted
// to float32 fill about 300 KB, which stays in a core's L2.
constexpr int64_t kTile = 128;

// One tile's step of the online softmax (the FlashAttention recurrence) for
// `queries` query vectors, `per_row` of them per batch row (all heads of a row
// on the absorbed path, one head on the naive one): S [queries, n] holds the
// tile's scaled scores and becomes the unnormalised probabilities exp(S - m)
// (0 where masked); the running max m, sum l and the weighted sum out
// [queries, width] are rescaled to the new max. Query i's row sees
// `first_visible + i / per_row` of the tile's n positions (causal mask).
void online_softmax_step(float* S, int64_t queries, int64_t n, int64_t per_row, int64_t first_visible, float* max,
                         float* sum, float* out, int64_t width) {
  for (int64_t i = 0; i < queries; ++i) {
    float* row = S + i * n;
    const int64_t visible = std::clamp<int64_t>(first_visible + i / per_row, 0, n);
    if (visible == 0) {
      // The row sees none of this tile (an earlier row of a block that straddles
      // tiles): its state is unchanged, and its weights must be 0, not -inf, for
      // the P·V product that follows (-inf · v is NaN or -inf).
      std::fill(row, row + n, 0.0f);
      continue;
    }
    std::fill(row + visible, row + n, -std::numeric_limits<float>::infinity());
    const float tile_max = max_value(row, visible), new_max = std::max(max[i], tile_max);
    const float rescale = std::exp(max[i] - new_max);  // 0 on the first tile (max = -inf)
    if (rescale != 1.0f) {
      sum[i] *= rescale;
      for (int64_t c = 0; c < width; ++c) out[i * width + c] *= rescale;
    }
    max[i] = new_max;
    sum[i] += exp_shifted_sum(row, visible, new_max);
    std::fill(row + visible, row + n, 0.0f);
  }
}

// Naive path (eq. 10-11, 16-18): every cached c_kv of a sequence expanded once
// through kv_b_proj into [k_nope ; v] per head (one GEMM), then per head and
// block of rows, tiles of positions as two small GEMMs each, S = Q_nope·K_nopeᵀ
// + Q_R·K_Rᵀ and out += P·V, with the online softmax in between. Per query and
// position this is d_n + d_R + d_v multiply-adds against the absorbed path's
// 2·d_c + d_R, so long prompts take it (choose_attention_path).
void attention_naive(const Dims& dm, const AttentionWeights& w, const float* q, const std::vector<SequenceSpan>& spans,
                     int64_t layer, float scale, float* heads_out, Scratch& scratch) {
  constexpr int64_t kRowsPerBlock = 64;
  const int64_t per_head = dm.nope + dm.v, kv_width = dm.heads * per_head;
  std::vector<float> converted;
  for (const SequenceSpan& span : spans) {
    const int64_t start = span.cache->length(), total = start + span.tokens;
    const LatentCache::Rows cached = span.cache->read(layer, 0, total, converted);
    float* kv = scratch.get(kExpandedKv, total * kv_width);
    matmul(cached.latents, total, w.kv_b_proj, kv);
    const int64_t blocks = (span.tokens + kRowsPerBlock - 1) / kRowsPerBlock;
    parallel_for(dm.heads * blocks, 1, [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> scores, state;  // grow-only
      scores.resize(static_cast<size_t>(kRowsPerBlock * kTile));
      state.resize(static_cast<size_t>(kRowsPerBlock * (dm.v + 2)));
      for (int64_t job = begin; job < end; ++job) {
        const int64_t h = job / blocks, t0 = job % blocks * kRowsPerBlock;
        const int64_t rows = std::min(kRowsPerBlock, span.tokens - t0), first_row = span.first_row + t0;
        float *max = state.data(), *sum = max + rows, *out = sum + rows;
        std::fill(max, max + rows, -std::numeric_limits<float>::infinity());
        std::fill(sum, sum + rows, 0.0f);
        std::fill(out, out + rows * dm.v, 0.0f);
        const float* q_nope = q + (first_row * dm.heads + h) * dm.qk;  // rows n_h·d_qk apart
        const int64_t q_stride = dm.heads * dm.qk, visible_end = start + t0 + rows;
        for (int64_t s0 = 0; s0 < visible_end; s0 += kTile) {
          const int64_t n = std::min(kTile, visible_end - s0);
          const float* k_nope = kv + s0 * kv_width + h * per_head;
          float* S = scores.data();
          gemm(false, true, rows, n, dm.nope, scale, q_nope, q_stride, k_nope, kv_width, 0.0f, S, n);
          gemm(false, true, rows, n, dm.rope, scale, q_nope + dm.nope, q_stride, cached.rope_keys + s0 * dm.rope, dm.rope,
               1.0f, S, n);
          online_softmax_step(S, rows, n, 1, start + t0 + 1 - s0, max, sum, out, dm.v);
          gemm(false, false, rows, dm.v, n, 1.0f, S, n, k_nope + dm.nope, kv_width, 1.0f, out, dm.v);
        }
        for (int64_t r = 0; r < rows; ++r) {
          float* o = heads_out + ((first_row + r) * dm.heads + h) * dm.v;
          for (int64_t c = 0; c < dm.v; ++c) o[c] = out[r * dm.v + c] / sum[r];
        }
      }
    });
  }
}

// Rows [first, first + count) of kv_b_proj as float32 [count, d_c]: in place
// when stored so, else converted into a per-thread buffer (valid until the next call).
const float* head_rows(const WeightMatrix& kv_b_proj, int64_t first, int64_t count) {
  if (const float* rows = kv_b_proj.f32_row(first)) return rows;
  thread_local std::vector<float> converted;  // grow-only
  converted.resize(static_cast<size_t>(count * kv_b_proj.cols));
  for (int64_t i = 0; i < count; ++i) kv_b_proj.dequantize_row(first + i, converted.data() + i * kv_b_proj.cols);
  return converted.data();
}

// A block of consecutive rows of one sequence (all their heads: `queries` =
// rows·n_h query vectors) against cached positions [begin, end): the
// online-softmax state of each query vector over that range (running max m,
// running sum l, unnormalised Σ exp(s - m)·c_kv in out).
struct AttentionWork {
  int64_t first_row, rows, begin, end;
  float* max;  // [queries]
  float* sum;  // [queries]
  float* out;  // [queries, d_c]
};

// The two products of a tile on AMX bfloat16 tiles (ops/amx.h) instead of
// float32 GEMMs, where the CPU has them and the cache is stored quantized.
// Scores come out transposed, Sᵀ = [C ; K_R]·[Q_lat ; Q_R]ᵀ, so that the cache
// rows are the tiles' A operand as they are; the weighted sum out += P·C takes
// C pair-interleaved. Query counts are padded to 16 and [d_c ; d_R] to 32 with
// zeros, which add nothing.
class AmxTileProducts {
 public:
  static bool applies(const Dims& dm, const LatentCache& cache) {
    return cache.type() != CacheType::kF32 && dm.latent % 16 == 0 && dm.rope % 2 == 0 && amx::enabled();
  }

  // Once per work item: [Q_lat ; Q_R]ᵀ as AMX's B operand.
  AmxTileProducts(const Dims& dm, int64_t queries, const float* q_lat, const float* q_rope)
      : dm_(dm), queries_(queries), padded_(round_up(queries, 16)), width_(round_up(dm.latent + dm.rope, 32)) {
    q_.assign(static_cast<size_t>(width_ * padded_), 0);
    amx::pack_b_transposed(q_lat, dm.latent, dm.latent, queries, padded_, q_.data());
    amx::pack_b_transposed(q_rope, dm.qk, dm.rope, queries, padded_, q_.data() + dm.latent * padded_);
  }

  // Positions [begin, begin + n) of the cache as the two products' operands:
  // [C ; K_R] as bf16 A rows (scores) and C pair-interleaved as B (weighted
  // sum); from q8 codes in one pass, otherwise through float32 rows.
  void load(const LatentCache& cache, int64_t layer, int64_t begin, int64_t n) {
    const int64_t rows = round_up(n, 16), k = round_up(n, 32);
    rows_.resize(static_cast<size_t>(rows * width_));
    zero_padding(rows_.data(), n, dm_.latent + dm_.rope, rows, width_);
    latents_.resize(static_cast<size_t>(k * dm_.latent));
    const WeightMatrix latents = cache.stored_latents(layer), rope_keys = cache.stored_rope_keys(layer);
    if (latents.is_q8()) {  // the cache keeps float32 block scales (latent_cache.cpp), which this reads as they are
      amx::q8_operands(reinterpret_cast<const int8_t*>(latents.row_data(begin)), latents.row_scales(begin).f32(), n, dm_.latent,
                       k, rows_.data(), width_, latents_.data());
    } else {
      float* c = float_rows(latents, begin, n);
      amx::to_bf16_rows(c, dm_.latent, n, dm_.latent, rows_.data(), width_);
      amx::pack_b(c, dm_.latent, n, k, dm_.latent, latents_.data());
    }
    amx::to_bf16_rows(float_rows(rope_keys, begin, n), dm_.rope, n, dm_.rope, rows_.data() + dm_.latent, width_);
  }

  // S [queries, n] = scale · (Q_lat·Cᵀ + Q_R·K_Rᵀ) over the loaded positions.
  void scores(int64_t n, float scale, float* S) {
    const int64_t rows = round_up(n, 16);
    transposed_.resize(static_cast<size_t>(rows * padded_));
    amx::gemm_bf16(rows, padded_, width_, rows_.data(), width_, q_.data(), transposed_.data(), padded_, false);
    for (int64_t i = 0; i < queries_; ++i)
      for (int64_t s = 0; s < n; ++s) S[i * n + s] = scale * transposed_[s * padded_ + i];
  }

  // out [queries, d_c] += P·C, P the tile's unnormalised probabilities S [queries, n].
  void accumulate(int64_t n, const float* P, float* out) {
    const int64_t k = round_up(n, 32);  // positions, padded with zero weights and zero rows
    probs_.resize(static_cast<size_t>(padded_ * k));
    zero_padding(probs_.data(), queries_, n, padded_, k);
    amx::to_bf16_rows(P, n, queries_, n, probs_.data(), k);
    if (padded_ == queries_) {
      amx::gemm_bf16(queries_, dm_.latent, k, probs_.data(), k, latents_.data(), out, dm_.latent, true);
      return;
    }
    sums_.resize(static_cast<size_t>(padded_ * dm_.latent));  // the padded rows must not land in out
    amx::gemm_bf16(padded_, dm_.latent, k, probs_.data(), k, latents_.data(), sums_.data(), dm_.latent, false);
    for (int64_t i = 0; i < queries_ * dm_.latent; ++i) out[i] += sums_[i];
  }

 private:
  static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }
  // Rows [begin, begin + n) of a stored part as float32 (valid until the next call).
  static float* float_rows(const WeightMatrix& part, int64_t begin, int64_t n) {
    converted_.resize(static_cast<size_t>(n * part.cols));
    for (int64_t i = 0; i < n; ++i) part.dequantize_row(begin + i, converted_.data() + i * part.cols);
    return converted_.data();
  }
  // Zeroes what lies outside [rows, cols) of a [padded_rows, padded_cols] operand.
  static void zero_padding(uint16_t* m, int64_t rows, int64_t cols, int64_t padded_rows, int64_t padded_cols) {
    for (int64_t i = 0; i < rows; ++i) std::fill(m + i * padded_cols + cols, m + (i + 1) * padded_cols, uint16_t{0});
    std::fill(m + rows * padded_cols, m + padded_rows * padded_cols, uint16_t{0});
  }

  const Dims& dm_;
  int64_t queries_, padded_, width_;
  // Grow-only per thread: no allocation per decoded token once warm.
  static thread_local std::vector<uint16_t> q_, rows_, probs_, latents_;
  static thread_local std::vector<float> transposed_, sums_, converted_;
};
thread_local std::vector<uint16_t> AmxTileProducts::q_, AmxTileProducts::rows_, AmxTileProducts::probs_,
    AmxTileProducts::latents_;
thread_local std::vector<float> AmxTileProducts::transposed_, AmxTileProducts::sums_, AmxTileProducts::converted_;

// Scores S = (Q_lat·Cᵀ + Q_R·K_Rᵀ)·scale per tile of cached positions, and the
// latents weighted by softmax(S): two small GEMMs per tile over the tile's
// rows, read once for all heads (and rows) of the work item. Positions a row
// may not see (later than itself) are masked. The softmax runs online (the
// FlashAttention recurrence), so the tile is converted from the cache's
// storage type once and each row of the cache is read once.
void attend_tiles(const Dims& dm, const float* q_lat, const float* q, const std::vector<RowContext>& context,
                  int64_t layer, float scale, const AttentionWork& work) {
  const int64_t queries = work.rows * dm.heads;
  const float* ql = q_lat + work.first_row * dm.heads * dm.latent;
  const float* q_rope = q + work.first_row * dm.heads * dm.qk + dm.nope;  // queries d_qk apart
  const LatentCache& cache = *context[work.first_row].cache;
  const int64_t first_position = context[work.first_row].position;
  thread_local std::vector<float> converted, scores;
  scores.resize(static_cast<size_t>(queries * kTile));
  for (int64_t i = 0; i < queries; ++i) work.max[i] = -std::numeric_limits<float>::infinity(), work.sum[i] = 0.0f;
  std::fill(work.out, work.out + queries * dm.latent, 0.0f);
  std::optional<AmxTileProducts> amx_products;
  if (AmxTileProducts::applies(dm, cache)) amx_products.emplace(dm, queries, ql, q_rope);
  for (int64_t s0 = work.begin; s0 < work.end; s0 += kTile) {
    const int64_t n = std::min(kTile, work.end - s0);
    float* S = scores.data();
    LatentCache::Rows tile{};
    if (amx_products) {
      amx_products->load(cache, layer, s0, n);
      amx_products->scores(n, scale, S);
    } else {
      tile = cache.read(layer, s0, n, converted);
      gemm(false, true, queries, n, dm.latent, scale, ql, dm.latent, tile.latents, dm.latent, 0.0f, S, n);
      gemm(false, true, queries, n, dm.rope, scale, q_rope, dm.qk, tile.rope_keys, dm.rope, 1.0f, S, n);
    }
    online_softmax_step(S, queries, n, dm.heads, first_position + 1 - s0, work.max, work.sum, work.out, dm.latent);
    if (amx_products) amx_products->accumulate(n, S, work.out);
    else gemm(false, false, queries, dm.latent, n, 1.0f, S, n, tile.latents, dm.latent, 1.0f, work.out, dm.latent);
  }
}

// Absorbed path: q_lat = W_UKᵀ·q_nope, scores against c_kv directly, then
// o_h = W_UV·(Σ p·c_kv). W_UK_h is rows [h(d_n+d_v), h(d_n+d_v)+d_n) of kv_b_proj,
// W_UV_h the d_v rows after them. The two absorptions run over all rows of the
// batch at once (each kv_b_proj row is read once); only the scores need each
// row's own cache.
void attention_absorbed(const Dims& dm, const AttentionWeights& w, const float* q, int64_t rows,
                        const std::vector<SequenceSpan>& spans, const std::vector<RowContext>& context, int64_t layer,
                        float scale, float* heads_out, Scratch& scratch) {
  const int64_t per_head = dm.nope + dm.v;
  float* q_lat = scratch.get(kAbsorbedQuery, rows * dm.heads * dm.latent);
  float* o_lat = scratch.get(kOutputLatent, rows * dm.heads * dm.latent);
  // Per head, as GEMMs over all rows: Q_lat,h = Q_nope,h · W_UK,h  [rows, d_c].
  // Fewer than kGemmMinTokens rows (decoding) read W_UK,h in its stored format
  // row by row instead of converting the head's d_n × d_c block and packing it
  // for a GEMM.
  parallel_for(dm.heads, 1, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      if (rows < kGemmMinTokens) {
        for (int64_t t = 0; t < rows; ++t)
          combine_rows(w.kv_b_proj, h * per_head, dm.nope, q + (t * dm.heads + h) * dm.qk,
                       q_lat + (t * dm.heads + h) * dm.latent);
        continue;
      }
      const float* w_uk = head_rows(w.kv_b_proj, h * per_head, dm.nope);
      gemm(false, false, rows, dm.latent, dm.nope, 1.0f, q + h * dm.qk, dm.heads * dm.qk, w_uk, dm.latent, 0.0f,
           q_lat + h * dm.latent, dm.heads * dm.latent);
    }
  });

  // Work items: blocks of up to kRowsPerBlock rows of a sequence; when there
  // are fewer blocks than threads (decoding), each block's positions are split
  // into ranges whose partial softmax states are merged afterwards.
  constexpr int64_t kRowsPerBlock = 8;
  struct Block {
    int64_t first_row, rows, first_work, works;
  };
  // Grow-only (no allocation per step). The worker threads below must see the
  // calling thread's lists, hence the references rather than the thread_local names.
  thread_local std::vector<Block> block_list;
  thread_local std::vector<AttentionWork> work_list;
  std::vector<Block>& blocks = block_list;
  std::vector<AttentionWork>& works = work_list;
  blocks.clear();
  for (const SequenceSpan& span : spans)
    for (int64_t t = 0; t < span.tokens; t += kRowsPerBlock)
      blocks.push_back({span.first_row + t, std::min(kRowsPerBlock, span.tokens - t), 0, 1});
  const int64_t threads = num_threads();
  works.clear();
  for (Block& b : blocks) {
    const int64_t visible = context[b.first_row + b.rows - 1].position + 1;
    const int64_t split = static_cast<int64_t>(blocks.size()) >= threads ? 1 : std::clamp<int64_t>(visible / (2 * kTile), 1, threads);
    b.first_work = static_cast<int64_t>(works.size());
    b.works = split;
    for (int64_t k = 0; k < split; ++k)
      works.push_back({b.first_row, b.rows, visible * k / split, visible * (k + 1) / split, nullptr, nullptr, nullptr});
  }
  int64_t state_floats = 0;
  for (const AttentionWork& work : works) state_floats += work.rows * dm.heads * (dm.latent + 2);
  float* state = scratch.get(kAttentionState, state_floats);
  for (AttentionWork& work : works) {
    const int64_t queries = work.rows * dm.heads;
    work.max = state, work.sum = state + queries, work.out = state + 2 * queries;
    state += queries * (dm.latent + 2);
  }
  parallel_for(static_cast<int64_t>(works.size()), 1, [&](int64_t w0, int64_t w1) {
    for (int64_t i = w0; i < w1; ++i) attend_tiles(dm, q_lat, q, context, layer, scale, works[i]);
  });
  // o_lat = Σ_k exp(m_k - m)·out_k / Σ_k exp(m_k - m)·l_k over a block's ranges.
  for (const Block& b : blocks) {
    const int64_t queries = b.rows * dm.heads;
    for (int64_t i = 0; i < queries; ++i) {
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t k = 0; k < b.works; ++k) m = std::max(m, works[b.first_work + k].max[i]);
      float* o = o_lat + (b.first_row * dm.heads + i) * dm.latent;
      std::fill(o, o + dm.latent, 0.0f);
      float l = 0.0f;
      for (int64_t k = 0; k < b.works; ++k) {
        const AttentionWork& work = works[b.first_work + k];
        if (work.sum[i] == 0.0f) continue;  // a range with no visible position
        const float weight = std::exp(work.max[i] - m);
        l += weight * work.sum[i];
        axpy(weight, work.out + i * dm.latent, o, dm.latent);
      }
      for (int64_t c = 0; c < dm.latent; ++c) o[c] /= l;
    }
  }

  // o_h = O_lat,h · W_UV,hᵀ  [rows, d_v] per head.
  parallel_for(dm.heads, 1, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      if (rows < kGemmMinTokens) {
        for (int64_t t = 0; t < rows; ++t)
          matvec_rows(w.kv_b_proj, h * per_head + dm.nope, dm.v, o_lat + (t * dm.heads + h) * dm.latent,
                      heads_out + (t * dm.heads + h) * dm.v);
        continue;
      }
      const float* w_uv = head_rows(w.kv_b_proj, h * per_head + dm.nope, dm.v);
      gemm(false, true, rows, dm.v, dm.latent, 1.0f, o_lat + h * dm.latent, dm.heads * dm.latent, w_uv, dm.latent, 0.0f,
           heads_out + h * dm.v, dm.heads * dm.v);
    }
  });
}

}  // namespace

int64_t multiply_adds_per_pair(const Config& c, AttentionPath path) {
  return path == AttentionPath::kNaive ? c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim
                                       : 2 * c.kv_lora_rank + c.qk_rope_head_dim;
}

AttentionPath choose_attention_path(const Config& c, const std::vector<SequenceSpan>& spans) {
  const double d_c = static_cast<double>(c.kv_lora_rank), d_n = static_cast<double>(c.qk_nope_head_dim),
               d_v = static_cast<double>(c.v_head_dim);
  const double naive_pair = static_cast<double>(multiply_adds_per_pair(c, AttentionPath::kNaive)),
               absorbed_pair = static_cast<double>(multiply_adds_per_pair(c, AttentionPath::kAbsorbed));
  // The naive form holds one sequence's expanded keys and values at a time, in float32.
  constexpr double kMaxExpandedBytes = double(int64_t(1) << 30);
  double naive = 0.0, absorbed = 0.0;  // per head
  for (const SequenceSpan& span : spans) {
    const double start = static_cast<double>(span.cache->length()), tokens = static_cast<double>(span.tokens);
    if ((start + tokens) * static_cast<double>(c.num_attention_heads) * (d_n + d_v) * sizeof(float) > kMaxExpandedBytes)
      return AttentionPath::kAbsorbed;
    const double pairs = tokens * start + tokens * (tokens + 1.0) / 2.0;  // (query, visible position) pairs
    naive += (start + tokens) * d_c * (d_n + d_v) + pairs * naive_pair;
    absorbed += tokens * d_c * (d_n + d_v) + pairs * absorbed_pair;
  }
  return naive < absorbed ? AttentionPath::kNaive : AttentionPath::kAbsorbed;
}

void mla_forward(const Config& c, const AttentionWeights& w, const Rope& rope, int64_t layer, const float* h,
                 int64_t rows, const std::vector<SequenceSpan>& spans, AttentionPath path, float* out, Scratch& scratch,
                 const ShardPlan& plan) {
  const Dims dm(c, plan.heads.count(plan.rank));
  if (path == AttentionPath::kAuto) path = choose_attention_path(c, spans);  // before the caches grow
  const float eps = static_cast<float>(c.rms_norm_eps);
  thread_local std::vector<RowContext> row_contexts;  // grow-only: no allocation per step
  std::vector<RowContext>& context = row_contexts;
  context.resize(rows);
  for (const SequenceSpan& span : spans)
    for (int64_t t = 0; t < span.tokens; ++t)
      context[span.first_row + t] = {span.cache->length() + t, span.cache};

  // Queries (eq. 12-14, 16): q = W_UQ·RMSNorm(W_DQ·h), or q = W_Q·h without compression.
  // Per head q = [q_nope (d_n) ; q_R (d_R)], RoPE on q_R.
  float* q = scratch.get(kQuery, rows * dm.heads * dm.qk);
  if (c.q_lora_rank > 0) {
    float* c_q = scratch.get(kQueryLatent, rows * c.q_lora_rank);
    matmul(h, rows, w.q_a_proj, c_q);
    rmsnorm(c_q, w.q_a_layernorm.data(), eps, rows, c.q_lora_rank, c_q);
    matmul(c_q, rows, w.q_b_proj, q);
  } else {
    matmul(h, rows, w.q_proj, q);
  }
  for (int64_t t = 0; t < rows; ++t) rope.apply(q + t * dm.heads * dm.qk + dm.nope, dm.heads, dm.qk, context[t].position);

  // Keys and values (eq. 9, 15): [c_kv ; k_R] = W_DKV·h; the cache keeps
  // RMSNorm(c_kv) and RoPE(k_R), one k_R shared by all heads.
  float* kv_a = scratch.get(kKvA, rows * (dm.latent + dm.rope));
  matmul(h, rows, w.kv_a_proj_with_mqa, kv_a);
  float* c_kv = scratch.get(kNormedLatent, dm.latent);
  for (int64_t t = 0; t < rows; ++t) {
    float* row = kv_a + t * (dm.latent + dm.rope);
    const RowContext& r = context[t];
    rmsnorm(row, w.kv_a_layernorm.data(), eps, 1, dm.latent, c_kv);
    float* k_rope = row + dm.latent;
    rope.apply(k_rope, 1, dm.rope, r.position);
    r.cache->store(layer, r.position, c_kv, k_rope);
  }

  // Attention per head (eq. 17-18), then u = W_O·[o_1; ...; o_nh] (eq. 19).
  float* heads_out = scratch.get(kHeadsOut, rows * dm.heads * dm.v);
  if (path == AttentionPath::kNaive)
    attention_naive(dm, w, q, spans, layer, rope.softmax_scale(), heads_out, scratch);
  else
    attention_absorbed(dm, w, q, rows, spans, context, layer, rope.softmax_scale(), heads_out, scratch);
  if (!plan.split()) {
    matmul(heads_out, rows, w.o_proj, out);
    return;
  }
  // Split over ranks: every rank's heads, this rank's rows of W_O, every rank's rows.
  float* all_heads = scratch.get(kAllHeadsOut, rows * c.num_attention_heads * dm.v);
  plan.group->gather_columns(heads_out, rows, plan.head_outputs.bounds, all_heads);
  float* out_rows = scratch.get(kOutputRows, rows * plan.hidden.count(plan.rank));
  matmul(all_heads, rows, w.o_proj, out_rows);
  plan.group->gather_columns(out_rows, rows, plan.hidden.bounds, out);
}

}  // namespace dsv2
