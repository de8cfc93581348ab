// MLA training pass (DeepSeek-V2 §2.1, naive form: K and V are materialised,
// which is what training does). Backward follows the forward in reverse.
#include "train/mla_train.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/backward.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/matmul.h"
#include "train/train_weights.h"

namespace dsv2 {

namespace {

struct Dims {
  int64_t heads, nope, rope, v, latent, qk, kv_width;
  explicit Dims(const Config& c)
      : heads(c.num_attention_heads), nope(c.qk_nope_head_dim), rope(c.qk_rope_head_dim), v(c.v_head_dim),
        latent(c.kv_lora_rank), qk(c.qk_head_dim()), kv_width(c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim)) {}
};

// K of one head for one sequence: [T, d_n + d_R] = [k_nope_h | k_R].
void gather_keys(const Dims& dm, const float* kv, const float* k_rope, int64_t h, int64_t T, float* keys) {
  for (int64_t t = 0; t < T; ++t) {
    const float* kn = kv + t * dm.kv_width + h * (dm.nope + dm.v);
    for (int64_t i = 0; i < dm.nope; ++i) keys[t * dm.qk + i] = kn[i];
    for (int64_t i = 0; i < dm.rope; ++i) keys[t * dm.qk + dm.nope + i] = k_rope[t * dm.rope + i];
  }
}

// Attention tiles: kQueryBlock queries against up to kKeyBlock keys at a time.
// Key blocks wholly above the causal diagonal are skipped; up to kKeyBlock
// positions a query block meets all its keys in one tile (one GEMM, as an
// untiled pass would), beyond it the softmax runs online across tiles.
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kKeyBlock = 256;

// Tokens per thread chunk of the per-token loops (RoPE, latent norm).
constexpr int64_t kRowGrain = 32;

// The keys query t sees within the tile of keys [c0, c0 + cols): those of
// [first, t] (causal, and from the start of its packed document), as an
// offset into the tile and a count (0: none).
struct KeyRange {
  int64_t begin, count;
};
KeyRange visible_keys(int64_t first, int64_t t, int64_t c0, int64_t cols) {
  const int64_t lo = std::clamp<int64_t>(first - c0, 0, cols), hi = std::clamp<int64_t>(t - c0 + 1, 0, cols);
  return {lo, std::max<int64_t>(0, hi - lo)};
}

// The first key each query of a sequence may see: 0 without packing, else the
// start of its document (t − its position).
struct FirstKeys {
  const int32_t* positions;  // of this sequence, or null
  int64_t operator()(int64_t t) const { return positions ? t - positions[t] : 0; }
  // Key tiles before the one holding the first query's first key are skipped
  // (documents start in order, so no later query reaches further back).
  int64_t first_tile(int64_t r0) const { return (*this)(r0) / kKeyBlock * kKeyBlock; }
};

int64_t position_of(const int32_t* positions, int64_t n, int64_t T) { return positions ? positions[n] : n % T; }

// Positions must restart at 0 for each packed document and count up by one
// inside it; anything else would let a query see keys it should not.
void check_positions(const int32_t* positions, int64_t B, int64_t T) {
  if (!positions) return;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const int32_t p = positions[b * T + t];
      require(p == 0 || (t > 0 && p == positions[b * T + t - 1] + 1),
              "training attention: positions must start at 0 and count up within each packed document");
    }
}

}  // namespace

void mla_train_forward(const Config& c, const Rope& rope, const AttentionWeights& w, const float* h, int64_t B, int64_t T,
                       MlaActivations& a, float* out, const int32_t* positions) {
  check_positions(positions, B, T);
  const Dims dm(c);
  const int64_t N = B * T, d = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  a.q.resize(N * dm.heads * dm.qk);
  if (c.q_lora_rank > 0) {
    a.c_q_raw.resize(N * c.q_lora_rank);
    a.c_q.resize(N * c.q_lora_rank);
    linear_forward(h, N, f32(w.q_a_proj), c.q_lora_rank, d, a.c_q_raw.data());
    rmsnorm(a.c_q_raw.data(), w.q_a_layernorm.data(), eps, N, c.q_lora_rank, a.c_q.data());
    linear_forward(a.c_q.data(), N, f32(w.q_b_proj), dm.heads * dm.qk, c.q_lora_rank, a.q.data());
  } else {
    linear_forward(h, N, f32(w.q_proj), dm.heads * dm.qk, d, a.q.data());
  }
  a.kv_a.resize(N * (dm.latent + dm.rope));
  linear_forward(h, N, f32(w.kv_a_proj_with_mqa), dm.latent + dm.rope, d, a.kv_a.data());
  a.c_kv.resize(N * dm.latent);
  a.k_rope.resize(N * dm.rope);
  parallel_for(N, kRowGrain, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t pos = position_of(positions, n, T);
      rope.apply(a.q.data() + n * dm.heads * dm.qk + dm.nope, dm.heads, dm.qk, pos);
      const float* row = a.kv_a.data() + n * (dm.latent + dm.rope);
      rmsnorm(row, w.kv_a_layernorm.data(), eps, 1, dm.latent, a.c_kv.data() + n * dm.latent);
      for (int64_t i = 0; i < dm.rope; ++i) a.k_rope[n * dm.rope + i] = row[dm.latent + i];
      rope.apply(a.k_rope.data() + n * dm.rope, 1, dm.rope, pos);
    }
  });
  a.kv.resize(N * dm.kv_width);
  linear_forward(a.c_kv.data(), N, f32(w.kv_b_proj), dm.kv_width, dm.latent, a.kv.data());

  a.lse.resize(B * dm.heads * T);
  a.heads.resize(N * dm.heads * dm.v);
  const bool keep_probs = T <= kKeyBlock;
  if (keep_probs) {
    a.probs.resize(B * dm.heads * T * T);
  } else {
    a.probs.clear();
    a.probs.shrink_to_fit();
  }
  const float scale = rope.softmax_scale();
  const int64_t ldq = dm.heads * dm.qk, ldo = dm.heads * dm.v;
  parallel_for(B * dm.heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> keys(T * dm.qk), s(kQueryBlock * kKeyBlock), acc(kQueryBlock * dm.v), max(kQueryBlock), sum(kQueryBlock);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t b = job / dm.heads, hd = job % dm.heads;
      const float* q = a.q.data() + b * T * ldq + hd * dm.qk;
      const float* kv = a.kv.data() + b * T * dm.kv_width;
      const float* v = kv + hd * (dm.nope + dm.v) + dm.nope;
      gather_keys(dm, kv, a.k_rope.data() + b * T * dm.rope, hd, T, keys.data());
      float* o = a.heads.data() + b * T * ldo + hd * dm.v;
      float* lse = a.lse.data() + job * T;
      const FirstKeys first{positions ? positions + b * T : nullptr};
      for (int64_t r0 = 0; r0 < T; r0 += kQueryBlock) {  // queries [r0, r1) see keys [0, r1)
        const int64_t rows = std::min(kQueryBlock, T - r0), r1 = r0 + rows;
        std::fill(max.begin(), max.end(), -std::numeric_limits<float>::infinity());
        std::fill(sum.begin(), sum.end(), 0.0f);
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t c0 = first.first_tile(r0); c0 < r1; c0 += kKeyBlock) {
          const int64_t cols = std::min(kKeyBlock, r1 - c0);
          gemm(false, true, rows, cols, dm.qk, scale, q + r0 * ldq, ldq, keys.data() + c0 * dm.qk, dm.qk, 0.0f, s.data(),
               cols);
          // Online softmax: rescale what the earlier tiles gave, add this tile's terms.
          for (int64_t i = 0; i < rows; ++i) {
            float* row = s.data() + i * cols;
            const KeyRange seen = visible_keys(first(r0 + i), r0 + i, c0, cols);
            if (seen.count == 0) {  // none of this tile: its weights are 0 (not exp(-inf) products)
              std::fill(row, row + cols, 0.0f);
              continue;
            }
            const float new_max = std::max(max[i], max_value(row + seen.begin, seen.count));
            const float rescale = std::exp(max[i] - new_max);  // 0 on the first tile
            sum[i] = sum[i] * rescale + exp_shifted_sum(row + seen.begin, seen.count, new_max);
            std::fill(row, row + seen.begin, 0.0f);
            std::fill(row + seen.begin + seen.count, row + cols, 0.0f);
            if (rescale != 1.0f)
              for (int64_t x = 0; x < dm.v; ++x) acc[i * dm.v + x] *= rescale;
            max[i] = new_max;
          }
          gemm(false, false, rows, dm.v, cols, 1.0f, s.data(), cols, v + c0 * dm.kv_width, dm.kv_width, 1.0f, acc.data(), dm.v);
        }
        for (int64_t i = 0; i < rows; ++i) {
          for (int64_t x = 0; x < dm.v; ++x) o[(r0 + i) * ldo + x] = acc[i * dm.v + x] / sum[i];
          lse[r0 + i] = max[i] + std::log(sum[i]);
        }
        if (keep_probs) {  // one tile: s holds exp(S − max) of keys [0, r1), zero past the diagonal
          float* p = a.probs.data() + (job * T + r0) * T;
          for (int64_t i = 0; i < rows; ++i) {
            const float inv = 1.0f / sum[i];
            for (int64_t j = 0; j < r1; ++j) p[i * T + j] = s[i * r1 + j] * inv;
          }
        }
      }
    }
  });
  linear_forward(a.heads.data(), N, f32(w.o_proj), d, dm.heads * dm.v, out);
}

void mla_train_backward(const Config& c, const Rope& rope, const AttentionWeights& w, const AttentionWeights& g,
                        const float* h, int64_t B, int64_t T, const MlaActivations& a, const float* dout, float* dh,
                        const int32_t* positions) {
  const Dims dm(c);
  const int64_t N = B * T, d = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // u = W_O·heads
  std::vector<float> d_heads(N * dm.heads * dm.v);
  linear_backward_weight(dout, N, a.heads.data(), d, dm.heads * dm.v, mut(g.o_proj));
  linear_backward_input(dout, N, f32(w.o_proj), d, dm.heads * dm.v, d_heads.data(), false);

  // Attention per (sequence, head), tile by tile as in the forward pass, with
  // the probabilities recomputed from the saved log-sum-exp:
  //   P = exp(S − lse), dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP − D) with D = rowsum(dO ∘ O),
  //   dQ += scale·dS·K, dK += scale·dSᵀ·Q.
  std::vector<float> d_q(N * dm.heads * dm.qk, 0.0f), d_kv(N * dm.kv_width, 0.0f), d_k_rope(N * dm.rope, 0.0f);
  const float scale = rope.softmax_scale();
  // Each head writes its own columns of d_q / d_kv; d_k_rope is shared, so heads sum into per-job buffers.
  std::vector<float> d_k_rope_per_job(B * dm.heads * T * dm.rope, 0.0f);
  const int64_t ldo = dm.heads * dm.v, ldq = dm.heads * dm.qk;
  parallel_for(B * dm.heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> keys(T * dm.qk), d_keys(T * dm.qk), p(kQueryBlock * kKeyBlock), d_s(kQueryBlock * kKeyBlock),
        row_dot(kQueryBlock);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t b = job / dm.heads, hd = job % dm.heads;
      const float* q = a.q.data() + b * T * ldq + hd * dm.qk;
      const float* kv = a.kv.data() + b * T * dm.kv_width;
      const float* v = kv + hd * (dm.nope + dm.v) + dm.nope;
      const float* o = a.heads.data() + b * T * ldo + hd * dm.v;
      const float* d_o = d_heads.data() + b * T * ldo + hd * dm.v;
      const float* lse = a.lse.data() + job * T;
      gather_keys(dm, kv, a.k_rope.data() + b * T * dm.rope, hd, T, keys.data());
      std::fill(d_keys.begin(), d_keys.end(), 0.0f);
      float* d_v = d_kv.data() + b * T * dm.kv_width + hd * (dm.nope + dm.v) + dm.nope;
      float* dq = d_q.data() + b * T * ldq + hd * dm.qk;
      const FirstKeys first{positions ? positions + b * T : nullptr};
      for (int64_t r0 = 0; r0 < T; r0 += kQueryBlock) {
        const int64_t rows = std::min(kQueryBlock, T - r0), r1 = r0 + rows;
        for (int64_t i = 0; i < rows; ++i) row_dot[i] = dot(d_o + (r0 + i) * ldo, o + (r0 + i) * ldo, dm.v);
        for (int64_t c0 = first.first_tile(r0); c0 < r1; c0 += kKeyBlock) {
          const int64_t cols = std::min(kKeyBlock, r1 - c0);
          if (!a.probs.empty()) {  // kept by the forward pass (one tile: c0 = 0, cols = r1)
            const float* kept = a.probs.data() + (job * T + r0) * T;
            for (int64_t i = 0; i < rows; ++i) std::copy(kept + i * T, kept + i * T + cols, p.data() + i * cols);
          } else {
            gemm(false, true, rows, cols, dm.qk, scale, q + r0 * ldq, ldq, keys.data() + c0 * dm.qk, dm.qk, 0.0f, p.data(),
                 cols);
            for (int64_t i = 0; i < rows; ++i) {
              float* row = p.data() + i * cols;
              const KeyRange seen = visible_keys(first(r0 + i), r0 + i, c0, cols);
              exp_shifted_sum(row + seen.begin, seen.count, lse[r0 + i]);  // P = exp(S − lse); the sum is 1
              std::fill(row, row + seen.begin, 0.0f);
              std::fill(row + seen.begin + seen.count, row + cols, 0.0f);
            }
          }
          gemm(true, false, cols, dm.v, rows, 1.0f, p.data(), cols, d_o + r0 * ldo, ldo, 1.0f, d_v + c0 * dm.kv_width,
               dm.kv_width);
          gemm(false, true, rows, cols, dm.v, 1.0f, d_o + r0 * ldo, ldo, v + c0 * dm.kv_width, dm.kv_width, 0.0f, d_s.data(),
               cols);
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = 0; j < cols; ++j) d_s[i * cols + j] = p[i * cols + j] * (d_s[i * cols + j] - row_dot[i]);
          gemm(false, false, rows, dm.qk, cols, scale, d_s.data(), cols, keys.data() + c0 * dm.qk, dm.qk, 1.0f, dq + r0 * ldq,
               ldq);
          gemm(true, false, cols, dm.qk, rows, scale, d_s.data(), cols, q + r0 * ldq, ldq, 1.0f, d_keys.data() + c0 * dm.qk,
               dm.qk);
        }
      }
      for (int64_t t = 0; t < T; ++t) {
        float* dkn = d_kv.data() + (b * T + t) * dm.kv_width + hd * (dm.nope + dm.v);
        for (int64_t i = 0; i < dm.nope; ++i) dkn[i] = d_keys[t * dm.qk + i];
        for (int64_t i = 0; i < dm.rope; ++i) d_k_rope_per_job[(job * T + t) * dm.rope + i] = d_keys[t * dm.qk + dm.nope + i];
      }
    }
  });
  // k_R is one head shared by all heads: sum their gradients (heads in order).
  parallel_for(N, kRowGrain, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t b = n / T, t = n % T;
      for (int64_t hd = 0; hd < dm.heads; ++hd)
        for (int64_t i = 0; i < dm.rope; ++i)
          d_k_rope[n * dm.rope + i] += d_k_rope_per_job[((b * dm.heads + hd) * T + t) * dm.rope + i];
    }
  });

  // kv = c_kv·W_UKVᵀ
  std::vector<float> d_c_kv(N * dm.latent);
  linear_backward_weight(d_kv.data(), N, a.c_kv.data(), dm.kv_width, dm.latent, mut(g.kv_b_proj));
  linear_backward_input(d_kv.data(), N, f32(w.kv_b_proj), dm.kv_width, dm.latent, d_c_kv.data(), false);

  // [c_kv ; k_R] = W_DKV·h, then norm / rope.
  std::vector<float> d_kv_a(N * (dm.latent + dm.rope), 0.0f), d_norm_in(N * dm.latent, 0.0f);
  std::vector<float> kv_a_latent(N * dm.latent);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < dm.latent; ++i) kv_a_latent[n * dm.latent + i] = a.kv_a[n * (dm.latent + dm.rope) + i];
  rmsnorm_backward(kv_a_latent.data(), w.kv_a_layernorm.data(), eps, N, dm.latent, d_c_kv.data(), d_norm_in.data(),
                   mut(g.kv_a_layernorm));
  parallel_for(N, kRowGrain, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t pos = position_of(positions, n, T);
      rope.apply_backward(d_k_rope.data() + n * dm.rope, 1, dm.rope, pos);
      for (int64_t i = 0; i < dm.latent; ++i) d_kv_a[n * (dm.latent + dm.rope) + i] = d_norm_in[n * dm.latent + i];
      for (int64_t i = 0; i < dm.rope; ++i) d_kv_a[n * (dm.latent + dm.rope) + dm.latent + i] = d_k_rope[n * dm.rope + i];
      rope.apply_backward(d_q.data() + n * dm.heads * dm.qk + dm.nope, dm.heads, dm.qk, pos);
    }
  });
  linear_backward_weight(d_kv_a.data(), N, h, dm.latent + dm.rope, d, mut(g.kv_a_proj_with_mqa));
  linear_backward_input(d_kv_a.data(), N, f32(w.kv_a_proj_with_mqa), dm.latent + dm.rope, d, dh, true);

  // Queries.
  if (c.q_lora_rank > 0) {
    const int64_t r = c.q_lora_rank;
    std::vector<float> d_c_q(N * r), d_c_q_raw(N * r, 0.0f);
    linear_backward_weight(d_q.data(), N, a.c_q.data(), dm.heads * dm.qk, r, mut(g.q_b_proj));
    linear_backward_input(d_q.data(), N, f32(w.q_b_proj), dm.heads * dm.qk, r, d_c_q.data(), false);
    rmsnorm_backward(a.c_q_raw.data(), w.q_a_layernorm.data(), eps, N, r, d_c_q.data(), d_c_q_raw.data(), mut(g.q_a_layernorm));
    linear_backward_weight(d_c_q_raw.data(), N, h, r, d, mut(g.q_a_proj));
    linear_backward_input(d_c_q_raw.data(), N, f32(w.q_a_proj), r, d, dh, true);
  } else {
    linear_backward_weight(d_q.data(), N, h, dm.heads * dm.qk, d, mut(g.q_proj));
    linear_backward_input(d_q.data(), N, f32(w.q_proj), dm.heads * dm.qk, d, dh, true);
  }
}

}  // namespace dsv2
