// Intel AMX (Advanced Matrix Extensions) bfloat16 tile products.
//
// Sapphire Rapids and later Xeons multiply 16×32 bfloat16 tiles into 16×16
// float32 tiles at ~16× the float32 FMA rate of the same core. Decoding over a
// long context is dominated by absorbed MLA's two products per cached position
// (n_h·(2·d_c + d_R) multiply-adds), which on AVX-512 alone cap how fast a
// 16K-token context runs; with AMX they stop mattering. Used by model/mla.cpp
// for quantized latent caches (whose values are already coarser than bfloat16).
//
// Layouts (bfloat16 stored as uint16_t):
//   A  row-major [m, k] with lda elements per row (k a multiple of 32);
//   B  "pair-interleaved" as AMX reads it: rows 2r and 2r+1 of the [k, n] matrix
//      side by side, element (kk, j) at (kk / 2)·2n + 2j + kk % 2 (n a multiple of 16);
//   C  row-major float32 [m, n] with ldc elements per row (m a multiple of 16).
#pragma once

#include <cstdint>

namespace dsv2::amx {

// The CPU has AMX-TILE, AMX-BF16 and AVX512-BF16, and Linux granted this
// process the tile state (arch_prctl ARCH_REQ_XCOMP_PERM). Checked once.
bool available();
// available() and not switched off (by set_enabled(false) or DSV2_AMX=0 in the
// environment: A/B measurements and tests of the other path).
bool enabled();
void set_enabled(bool on);

// A rows: out[i·ldo + c] = bf16(a[i·lda + c]) for i < m, c < k (any k; the rest of each row untouched).
void to_bf16_rows(const float* a, int64_t lda, int64_t m, int64_t k, uint16_t* out, int64_t ldo);
// B from a row-major float32 [k, n] matrix (ldb); rows k..k_padded are zero.
void pack_b(const float* b, int64_t ldb, int64_t k, int64_t k_padded, int64_t n, uint16_t* out);
// B from its transpose, row-major float32 [n, k] (ld): B(kk, j) = bt[j·ld + kk],
// as the first k rows (k even) of a B n_padded wide; columns n..n_padded are left alone.
void pack_b_transposed(const float* bt, int64_t ld, int64_t k, int64_t n, int64_t n_padded, uint16_t* out);

// Both operands of a tile of q8 rows (int8 codes q [n, width], a float32 scale per
// 32 codes) in one pass: the values q·scale as bf16 A rows (rows[i·ld_rows + c]),
// and as B pair-interleaved ([k_padded, width], rows n..k_padded zero). width a
// multiple of 32.
void q8_operands(const int8_t* q, const float* scales, int64_t n, int64_t width, int64_t k_padded, uint16_t* rows,
                 int64_t ld_rows, uint16_t* b);

// C (+)= A·B on the tiles; m and n multiples of 16, k a multiple of 32.
void gemm_bf16(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, float* c, int64_t ldc,
               bool accumulate);

}  // namespace dsv2::amx
