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

#define DSV2_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define DSV2_AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))

namespace {

// Sixteen float32 → sixteen bfloat16 (round to nearest even), by the AVX512-BF16
// instruction that converts two vectors at once.
DSV2_AVX512_BF16 inline __m512i bf16_pair(__m512 low, __m512 high) {
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(high, low));  // high half from the first operand
}

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
  // (row0[j], row1[j]) pairs: the converted rows sit in the low and high halves.
  alignas(64) static const uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                       8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
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

// One 32×32 block of C in tiles 0-3 (fewer where m or n ends): A in tiles 4-5,
// B in 6-7. Tile numbers are part of the instructions, hence the template.
template <bool kTwoRows, bool kTwoCols>
DSV2_AMX void block(int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t n, float* c, int64_t ldc,
                    bool accumulate) {
  const int64_t a_stride = lda * 2, b_stride = n * 4, c_stride = ldc * 4;
  float* c01 = c + 16;
  float* c10 = c + 16 * ldc;
  float* c11 = c10 + 16;
  if (accumulate) {
    _tile_loadd(0, c, c_stride);
    if constexpr (kTwoCols) _tile_loadd(1, c01, c_stride);
    if constexpr (kTwoRows) _tile_loadd(2, c10, c_stride);
    if constexpr (kTwoRows && kTwoCols) _tile_loadd(3, c11, c_stride);
  } else {
    _tile_zero(0);
    if constexpr (kTwoCols) _tile_zero(1);
    if constexpr (kTwoRows) _tile_zero(2);
    if constexpr (kTwoRows && kTwoCols) _tile_zero(3);
  }
  for (int64_t kk = 0; kk < k; kk += 32) {
    const uint16_t* b_rows = b + kk / 2 * 2 * n;  // row pair kk/2 of the packed B
    _tile_loadd(4, a + kk, a_stride);
    _tile_loadd(6, b_rows, b_stride);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (kTwoCols) {
      _tile_loadd(7, b_rows + 32, b_stride);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (kTwoRows) {
      _tile_loadd(5, a + 16 * lda + kk, a_stride);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (kTwoCols) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, c_stride);
  if constexpr (kTwoCols) _tile_stored(1, c01, c_stride);
  if constexpr (kTwoRows) _tile_stored(2, c10, c_stride);
  if constexpr (kTwoRows && kTwoCols) _tile_stored(3, c11, c_stride);
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
  for (int64_t i = 0; i < m; i += 32)
    for (int64_t j = 0; j < n; j += 32) {
      const bool two_rows = i + 16 < m, two_cols = j + 16 < n;
      const uint16_t* a_block = a + i * lda;
      const uint16_t* b_block = b + 2 * j;
      float* c_block = c + i * ldc + j;
      if (two_rows && two_cols) block<true, true>(k, a_block, lda, b_block, n, c_block, ldc, accumulate);
      else if (two_rows) block<true, false>(k, a_block, lda, b_block, n, c_block, ldc, accumulate);
      else if (two_cols) block<false, true>(k, a_block, lda, b_block, n, c_block, ldc, accumulate);
      else block<false, false>(k, a_block, lda, b_block, n, c_block, ldc, accumulate);
    }
}

#else  // no AMX in this build: available() is false and nothing below is reached.

void to_bf16_rows(const float*, int64_t, int64_t, int64_t, uint16_t*, int64_t) {}
void pack_b(const float*, int64_t, int64_t, int64_t, int64_t, uint16_t*) {}
void pack_b_transposed(const float*, int64_t, int64_t, int64_t, int64_t, uint16_t*) {}
void gemm_bf16(int64_t, int64_t, int64_t, const uint16_t*, int64_t, const uint16_t*, float*, int64_t, bool) {}

#endif

}  // namespace dsv2::amx
