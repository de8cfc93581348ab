// AMX bf16 tile products (see amx.h). The kernels carry their instruction
// sets as function attributes, so this file builds with the project's plain
// flags and nothing here runs unless available() said the CPU and OS allow it.
#include "ops/amx.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/dtype.h"

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define DSV2_AMX_BUILD 1
#else
#define DSV2_AMX_BUILD 0
#endif

namespace dsv2::amx {

namespace {

#if DSV2_AMX_BUILD
constexpr long kArchRequestXcompPerm = 0x1023;  // arch_prctl: ask for an extended state component
constexpr long kXfeatureTileData = 18;          // the AMX tile registers' state

bool detect() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool avx512f = ebx & (1u << 16), avx512bw = ebx & (1u << 30);
  const bool amx_bf16 = edx & (1u << 22), amx_tile = edx & (1u << 24);
  if (!(avx512f && avx512bw && amx_bf16 && amx_tile)) return false;
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) || !(eax & (1u << 5))) return false;  // AVX512_BF16
  // Linux enables AMX per process on request; the call fails on kernels without it.
  return syscall(SYS_arch_prctl, kArchRequestXcompPerm, kXfeatureTileData) == 0;
}
#else
bool detect() { return false; }
#endif

std::atomic<bool> switched_on{[] {
  const char* env = std::getenv("DSV2_AMX");
  return !(env && std::string_view(env) == "0");
}()};

}  // namespace

bool available() {
  static const bool yes = detect();
  return yes;
}

bool enabled() { return switched_on.load(std::memory_order_relaxed) && available(); }

void set_enabled(bool on) { switched_on.store(on, std::memory_order_relaxed); }

#if DSV2_AMX_BUILD

// GCC 12 warns that the _mm512_undefined_* operands inside its own AVX-512
// intrinsics "may be used uninitialized" when they are inlined into functions
// that get the ISA from a target attribute (GCC bug 105593): not our code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define DSV2_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define DSV2_AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))

namespace {

// Two vectors of sixteen float32 → thirty-two bfloat16, low's then high's (round
// to nearest even), by the AVX512-BF16 instruction that converts two at once.
DSV2_AVX512_BF16 inline __m512i bf16_pair(__m512 low, __m512 high) {
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(high, low));  // high half from the first operand
}

// Sixteen q8 codes times their block's scale.
DSV2_AVX512_BF16 inline __m512 q8_values(const int8_t* codes, float scale) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)), _mm512_set1_ps(scale));
}

// Two rows' sixteen bf16 values each (low and high halves) → (row0[j], row1[j]) pairs.
alignas(64) constexpr uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                  8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

}  // namespace

DSV2_AVX512_BF16 void to_bf16_rows(const float* a, int64_t lda, int64_t m, int64_t k, uint16_t* out, int64_t ldo) {
  for (int64_t i = 0; i < m; ++i) {
    const float* row = a + i * lda;
    uint16_t* dst = out + i * ldo;
    int64_t c = 0;
    for (; c + 32 <= k; c += 32)
      _mm512_storeu_si512(dst + c, bf16_pair(_mm512_loadu_ps(row + c), _mm512_loadu_ps(row + c + 16)));
    for (; c < k; ++c) dst[c] = float_to_bf16(row[c]);
  }
}

DSV2_AVX512_BF16 void pack_b(const float* b, int64_t ldb, int64_t k, int64_t k_padded, int64_t n, uint16_t* out) {
  const __m512i interleave = _mm512_load_si512(kInterleave);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = 0; r < k_padded / 2; ++r) {
    const float* row0 = 2 * r < k ? b + 2 * r * ldb : nullptr;
    const float* row1 = 2 * r + 1 < k ? b + (2 * r + 1) * ldb : nullptr;
    uint16_t* dst = out + r * 2 * n;
    for (int64_t j = 0; j < n; j += 16) {
      const __m512 x0 = row0 ? _mm512_loadu_ps(row0 + j) : zero, x1 = row1 ? _mm512_loadu_ps(row1 + j) : zero;
      _mm512_storeu_si512(dst + 2 * j, _mm512_permutexvar_epi16(interleave, bf16_pair(x0, x1)));
    }
  }
}

DSV2_AVX512_BF16 void q8_operands(const int8_t* q, const float* scales, int64_t n, int64_t width, int64_t k_padded,
                                  uint16_t* rows, int64_t ld_rows, uint16_t* b) {
  const __m512i interleave = _mm512_load_si512(kInterleave);
  const int64_t blocks = width / 32;
  for (int64_t t = 0; t < k_padded; t += 2) {
    uint16_t* pair = b + t * width;  // B row pair t/2
    if (t >= n) {
      std::memset(pair, 0, static_cast<size_t>(2 * width) * sizeof(uint16_t));
      continue;
    }
    const bool second = t + 1 < n;
    for (int64_t c = 0; c < width; c += 16) {
      const __m512 x0 = q8_values(q + t * width + c, scales[t * blocks + c / 32]);
      const __m512 x1 = second ? q8_values(q + (t + 1) * width + c, scales[(t + 1) * blocks + c / 32]) : _mm512_setzero_ps();
      const __m512i both = bf16_pair(x0, x1);  // row t's 16 values, then row t+1's
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(rows + t * ld_rows + c), _mm512_castsi512_si256(both));
      if (second)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(rows + (t + 1) * ld_rows + c), _mm512_extracti64x4_epi64(both, 1));
      _mm512_storeu_si512(pair + 2 * c, _mm512_permutexvar_epi16(interleave, both));
    }
  }
}

void pack_b_transposed(const float* bt, int64_t ld, int64_t k, int64_t n, int64_t n_padded, uint16_t* out) {
  for (int64_t r = 0; r < k / 2; ++r)
    for (int64_t j = 0; j < n; ++j) {
      out[r * 2 * n_padded + 2 * j] = float_to_bf16(bt[j * ld + 2 * r]);
      out[r * 2 * n_padded + 2 * j + 1] = float_to_bf16(bt[j * ld + 2 * r + 1]);
    }
}

namespace {

// Palette 1: every tile 16 rows of 64 bytes (16×32 bf16 or 16×16 float32).
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// Loads an accumulator tile from C, or zeroes it. A macro, not a function: the
// tile intrinsics paste the tile number into the instruction text.
#define DSV2_LOAD_OR_ZERO(tile, c, c_stride, accumulate) \
  do {                                                   \
    if (accumulate) _tile_loadd(tile, c, c_stride);      \
    else _tile_zero(tile);                               \
  } while (false)

// One block of C in tiles 0-3 (kRows × kCols tiles of 16×16, kRows·kCols ≤ 4):
// A in tiles 4-5, B in 6-7. Four accumulators keep four independent chains of
// tile products in flight (a product's latency is several times its issue
// interval), so a C one tile high (16 queries) runs 1×4 and one tile wide 4×1.
// Tile numbers are part of the instructions, hence the templates.
template <int kRows, int kCols>
DSV2_AMX void block(int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t n, float* c, int64_t ldc,
                    bool accumulate) {
  static_assert(kRows * kCols <= 4);
  const int64_t a_stride = lda * 2, b_stride = n * 4, c_stride = ldc * 4;
  // Accumulator t holds C tile (t / kCols, t % kCols).
  auto c_tile = [&](int t) { return c + (t / kCols) * 16 * ldc + (t % kCols) * 16; };
  DSV2_LOAD_OR_ZERO(0, c_tile(0), c_stride, accumulate);
  if constexpr (kRows * kCols > 1) DSV2_LOAD_OR_ZERO(1, c_tile(1), c_stride, accumulate);
  if constexpr (kRows * kCols > 2) DSV2_LOAD_OR_ZERO(2, c_tile(2), c_stride, accumulate);
  if constexpr (kRows * kCols > 3) DSV2_LOAD_OR_ZERO(3, c_tile(3), c_stride, accumulate);
  for (int64_t kk = 0; kk < k; kk += 32) {
    const uint16_t* a_rows = a + kk;             // A tile row r: a_rows + (r·16)·lda
    const uint16_t* b_rows = b + kk / 2 * 2 * n;  // B tile column j: b_rows + j·32
    if constexpr (kRows == 1) {  // one A tile, kCols B tiles
      _tile_loadd(4, a_rows, a_stride);
      _tile_loadd(6, b_rows, b_stride);
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (kCols > 1) {
        _tile_loadd(7, b_rows + 32, b_stride);
        _tile_dpbf16ps(1, 4, 7);
      }
      if constexpr (kCols > 2) {
        _tile_loadd(6, b_rows + 64, b_stride);
        _tile_dpbf16ps(2, 4, 6);
      }
      if constexpr (kCols > 3) {
        _tile_loadd(7, b_rows + 96, b_stride);
        _tile_dpbf16ps(3, 4, 7);
      }
    } else if constexpr (kCols == 1) {  // one B tile, kRows A tiles
      _tile_loadd(6, b_rows, b_stride);
      _tile_loadd(4, a_rows, a_stride);
      _tile_dpbf16ps(0, 4, 6);
      _tile_loadd(5, a_rows + 16 * lda, a_stride);
      _tile_dpbf16ps(1, 5, 6);
      if constexpr (kRows > 2) {
        _tile_loadd(4, a_rows + 32 * lda, a_stride);
        _tile_dpbf16ps(2, 4, 6);
      }
      if constexpr (kRows > 3) {
        _tile_loadd(5, a_rows + 48 * lda, a_stride);
        _tile_dpbf16ps(3, 5, 6);
      }
    } else {  // 2×2
      _tile_loadd(4, a_rows, a_stride);
      _tile_loadd(5, a_rows + 16 * lda, a_stride);
      _tile_loadd(6, b_rows, b_stride);
      _tile_loadd(7, b_rows + 32, b_stride);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c_tile(0), c_stride);
  if constexpr (kRows * kCols > 1) _tile_stored(1, c_tile(1), c_stride);
  if constexpr (kRows * kCols > 2) _tile_stored(2, c_tile(2), c_stride);
  if constexpr (kRows * kCols > 3) _tile_stored(3, c_tile(3), c_stride);
}

// C tiles [i0, i0 + rows) × [j0, j0 + cols) in blocks of kRows × kCols tiles.
template <int kRows, int kCols>
DSV2_AMX void blocks(int64_t row_tiles, int64_t col_tiles, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
                     int64_t n, float* c, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < row_tiles; i += kRows)
    for (int64_t j = 0; j < col_tiles; j += kCols)
      block<kRows, kCols>(k, a + i * 16 * lda, lda, b + j * 32, n, c + i * 16 * ldc + j * 16, ldc, accumulate);
}

}  // namespace

DSV2_AMX void gemm_bf16(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, float* c,
                        int64_t ldc, bool accumulate) {
  TileConfig config;
  for (int t = 0; t < 8; ++t) config.rows[t] = 16, config.bytes_per_row[t] = 64;
  _tile_loadconfig(&config);
  // The tile instructions are inline assembly that does not tell the compiler
  // it reads memory: make every earlier store to A, B and C visible first.
  asm volatile("" ::: "memory");
  const int64_t row_tiles = m / 16, col_tiles = n / 16;
  // The widest blocks that fit, then the leftover tiles one block shape down.
  if (row_tiles == 1 || col_tiles >= 4 * row_tiles) {
    const int64_t wide = col_tiles / 4 * 4;
    for (int64_t i = 0; i < row_tiles; ++i) {
      blocks<1, 4>(1, wide, k, a + i * 16 * lda, lda, b, n, c + i * 16 * ldc, ldc, accumulate);
      blocks<1, 1>(1, col_tiles - wide, k, a + i * 16 * lda, lda, b + wide * 32, n, c + i * 16 * ldc + wide * 16, ldc,
                   accumulate);
    }
  } else if (col_tiles == 1 || row_tiles >= 4 * col_tiles) {
    const int64_t tall = row_tiles / 4 * 4;
    for (int64_t j = 0; j < col_tiles; ++j) {
      blocks<4, 1>(tall, 1, k, a, lda, b + j * 32, n, c + j * 16, ldc, accumulate);
      blocks<1, 1>(row_tiles - tall, 1, k, a + tall * 16 * lda, lda, b + j * 32, n, c + tall * 16 * ldc + j * 16, ldc,
                   accumulate);
    }
  } else {
    const int64_t even_rows = row_tiles / 2 * 2, even_cols = col_tiles / 2 * 2;
    blocks<2, 2>(even_rows, even_cols, k, a, lda, b, n, c, ldc, accumulate);
    blocks<1, 1>(row_tiles - even_rows, col_tiles, k, a + even_rows * 16 * lda, lda, b, n, c + even_rows * 16 * ldc, ldc,
                 accumulate);
    blocks<1, 1>(even_rows, col_tiles - even_cols, k, a, lda, b + even_cols * 32, n, c + even_cols * 16, ldc, accumulate);
  }
}

#else  // no AMX in this build: available() is false and nothing below is reached.

void to_bf16_rows(const float*, int64_t, int64_t, int64_t, uint16_t*, int64_t) {}
void pack_b(const float*, int64_t, int64_t, int64_t, int64_t, uint16_t*) {}
void pack_b_transposed(const float*, int64_t, int64_t, int64_t, int64_t, uint16_t*) {}
void q8_operands(const int8_t*, const float*, int64_t, int64_t, int64_t, uint16_t*, int64_t, uint16_t*) {}
void gemm_bf16(int64_t, int64_t, int64_t, const uint16_t*, int64_t, const uint16_t*, float*, int64_t, bool) {}

#endif

}  // namespace dsv2::amx
