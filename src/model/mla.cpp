// Multi-head Latent Attention, following DeepSeek-V2 §2.1.2-2.1.3 (equation
// numbers from the paper's main text). Notation: d_c = kv_lora_rank, d_n = qk_nope_head_dim,
// d_R = qk_rope_head_dim, d_v = v_head_dim, n_h = num_attention_heads.
#include "model/mla.h"

#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/matmul.h"

namespace dsv2 {

namespace {

enum Slot : size_t { kQueryLatent, kQuery, kKvA, kHeadsOut, kExpandedKv, kAbsorbedQuery, kOutputLatent };

struct Dims {
  int64_t heads, nope, rope, v, latent, qk;
  explicit Dims(const Config& c)
      : heads(c.num_attention_heads), nope(c.qk_nope_head_dim), rope(c.qk_rope_head_dim), v(c.v_head_dim),
        latent(c.kv_lora_rank), qk(c.qk_head_dim()) {}
};

// softmax over scores[0..n) then out = Σ_s p_s · rows[s], rows `stride` apart.
void attend(float* scores, int64_t n, const float* rows, int64_t stride, int64_t width, float* out) {
  softmax(scores, n);
  for (int64_t i = 0; i < width; ++i) out[i] = 0.0f;
  for (int64_t s = 0; s < n; ++s) axpy(scores[s], rows + s * stride, out, width);
}

// Where one batch row sits: its position and its sequence's cache rows.
struct RowContext {
  int64_t position;
  float* latents;    // its cache's rows: [position + 1, d_c] visible
  float* rope_keys;  // [position + 1, d_R]
};

// Naive path: k_nope and v for every cached position of each sequence, [k_nope ; v] per head (eq. 10-11).
void attention_naive(const Dims& dm, const AttentionWeights& w, const float* q, const std::vector<SequenceSpan>& spans,
                     int64_t layer, float scale, float* heads_out, Scratch& scratch) {
  const int64_t kv_width = dm.heads * (dm.nope + dm.v);
  for (const SequenceSpan& span : spans) {
    const int64_t start = span.cache->length(), total = start + span.tokens;
    const float* rope_keys = span.cache->rope_keys(layer);
    float* kv = scratch.get(kExpandedKv, total * kv_width);
    matmul(span.cache->latents(layer), total, w.kv_b_proj, kv);
    parallel_for(span.tokens * dm.heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scores(total);
      for (int64_t job = begin; job < end; ++job) {
        const int64_t t = job / dm.heads, h = job % dm.heads, visible = start + t + 1, row = span.first_row + t;
        const float* q_nope = q + (row * dm.heads + h) * dm.qk;
        const float* q_rope = q_nope + dm.nope;
        for (int64_t s = 0; s < visible; ++s) {
          const float* k_nope = kv + s * kv_width + h * (dm.nope + dm.v);
          scores[s] = (dot(q_nope, k_nope, dm.nope) + dot(q_rope, rope_keys + s * dm.rope, dm.rope)) * scale;  // eq. 16-18
        }
        attend(scores.data(), visible, kv + h * (dm.nope + dm.v) + dm.nope, kv_width, dm.v,
               heads_out + (row * dm.heads + h) * dm.v);
      }
    });
  }
}

// Absorbed path: q_lat = W_UKᵀ·q_nope, scores against c_kv directly, then
// o_h = W_UV·(Σ p·c_kv). W_UK_h is rows [h(d_n+d_v), h(d_n+d_v)+d_n) of kv_b_proj,
// W_UV_h the d_v rows after them. The two absorptions run over all rows of the
// batch at once (each kv_b_proj row is read once); only the scores need each
// row's own cache.
void attention_absorbed(const Dims& dm, const AttentionWeights& w, const float* q, int64_t rows,
                        const std::vector<RowContext>& context, float scale, float* heads_out, Scratch& scratch) {
  const int64_t per_head = dm.nope + dm.v;
  float* q_lat = scratch.get(kAbsorbedQuery, rows * dm.heads * dm.latent);
  float* o_lat = scratch.get(kOutputLatent, rows * dm.heads * dm.latent);
  parallel_for(dm.heads, 1, [&](int64_t h0, int64_t h1) {
    std::vector<float> row(dm.latent);
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t t = 0; t < rows; ++t)
        for (int64_t c = 0; c < dm.latent; ++c) q_lat[(t * dm.heads + h) * dm.latent + c] = 0.0f;
      for (int64_t i = 0; i < dm.nope; ++i) {
        w.kv_b_proj.dequantize_row(h * per_head + i, row.data());
        for (int64_t t = 0; t < rows; ++t)
          axpy(q[(t * dm.heads + h) * dm.qk + i], row.data(), q_lat + (t * dm.heads + h) * dm.latent, dm.latent);
      }
    }
  });
  // Scores and the weighted sum of latents for all heads of a row at once: the
  // heads share the row's cache, so these are two matrix products
  //   S = (Q_lat·Cᵀ + Q_R·K_Rᵀ)·scale  [n_h, visible],  O_lat = softmax(S)·C  [n_h, d_c]
  // and the cache is read once per product instead of once per head. One row
  // (decoding) lets BLAS use every thread; several rows split over threads.
  const auto attend_row = [&](int64_t t) {
    const RowContext& r = context[t];
    const int64_t visible = r.position + 1;
    thread_local std::vector<float> scores;
    scores.resize(static_cast<size_t>(dm.heads * visible));
    const float* ql = q_lat + t * dm.heads * dm.latent;
    const float* q_rope = q + t * dm.heads * dm.qk + dm.nope;  // [n_h, d_R], heads d_qk apart
    gemm(false, true, dm.heads, visible, dm.latent, scale, ql, dm.latent, r.latents, dm.latent, 0.0f, scores.data(), visible);
    gemm(false, true, dm.heads, visible, dm.rope, scale, q_rope, dm.qk, r.rope_keys, dm.rope, 1.0f, scores.data(), visible);
    for (int64_t h = 0; h < dm.heads; ++h) softmax(scores.data() + h * visible, visible);
    gemm(false, false, dm.heads, dm.latent, visible, 1.0f, scores.data(), visible, r.latents, dm.latent, 0.0f,
         o_lat + t * dm.heads * dm.latent, dm.latent);
  };
  if (rows == 1)
    attend_row(0);
  else
    parallel_for(rows, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) attend_row(t);
    });
  parallel_for(dm.heads, 1, [&](int64_t h0, int64_t h1) {
    std::vector<float> row(dm.latent);
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t j = 0; j < dm.v; ++j) {
        w.kv_b_proj.dequantize_row(h * per_head + dm.nope + j, row.data());
        for (int64_t t = 0; t < rows; ++t)
          heads_out[(t * dm.heads + h) * dm.v + j] = dot(row.data(), o_lat + (t * dm.heads + h) * dm.latent, dm.latent);
      }
  });
}

}  // namespace

void mla_forward(const Config& c, const AttentionWeights& w, const Rope& rope, int64_t layer, const float* h,
                 int64_t rows, const std::vector<SequenceSpan>& spans, AttentionPath path, float* out, Scratch& scratch) {
  const Dims dm(c);
  const float eps = static_cast<float>(c.rms_norm_eps);
  std::vector<RowContext> context(rows);
  for (const SequenceSpan& span : spans)
    for (int64_t t = 0; t < span.tokens; ++t)
      context[span.first_row + t] = {span.cache->length() + t, span.cache->latents(layer), span.cache->rope_keys(layer)};

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
  for (int64_t t = 0; t < rows; ++t) {
    const float* row = kv_a + t * (dm.latent + dm.rope);
    const RowContext& r = context[t];
    rmsnorm(row, w.kv_a_layernorm.data(), eps, 1, dm.latent, r.latents + r.position * dm.latent);
    float* k_rope = r.rope_keys + r.position * dm.rope;
    for (int64_t i = 0; i < dm.rope; ++i) k_rope[i] = row[dm.latent + i];
    rope.apply(k_rope, 1, dm.rope, r.position);
  }

  // Attention per head (eq. 17-18), then u = W_O·[o_1; ...; o_nh] (eq. 19).
  float* heads_out = scratch.get(kHeadsOut, rows * dm.heads * dm.v);
  if (path == AttentionPath::kNaive)
    attention_naive(dm, w, q, spans, layer, rope.softmax_scale(), heads_out, scratch);
  else
    attention_absorbed(dm, w, q, rows, context, rope.softmax_scale(), heads_out, scratch);
  matmul(heads_out, rows, w.o_proj, out);
}

}  // namespace dsv2
