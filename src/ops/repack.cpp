// Load-time repacking (ops/repack.h): the panel formats belong to the GEMMs.
#include "ops/repack.h"

#include <cstdint>

#include "core/parallel.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_q8.h"

namespace dsv2 {
namespace {

constexpr size_t kAlign = 64;  // each panel starts on a cache line

// One panel's bytes in storage: the GEMM's panel, padded to whole cache lines.
size_t panel_stride(const WeightMatrix& w) {
  if (w.empty() || w.rows == 0) return 0;
  size_t bytes = 0;
  // (dsv2 serve runs bf16 prompts through float32 products: no panels read there)
  if (w.dtype == DType::BF16) bytes = gemm_bf16_for_prefill() ? gemm_bf16_panel_bytes(w) : 0;
  if (is_block_quantized(w.dtype)) bytes = gemm_q8_panel_bytes(w);
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

int64_t panel_count(const WeightMatrix& w) { return (w.rows + kRepackRows - 1) / kRepackRows; }

}  // namespace

size_t repacked_bytes(const WeightMatrix& w) { return panel_stride(w) * static_cast<size_t>(panel_count(w)); }

void repack_rows(WeightMatrix& w, std::vector<std::byte>& storage) {
  const size_t stride = panel_stride(w);
  if (stride == 0) return;
  static_assert(kGemmBf16PanelRows == kRepackRows && kGemmQ8PanelRows == kRepackRows);
  const int64_t panels = panel_count(w);
  storage.resize(stride * static_cast<size_t>(panels) + kAlign);
  const auto base = reinterpret_cast<uintptr_t>(storage.data());
  std::byte* const out = storage.data() + ((base + kAlign - 1) / kAlign * kAlign - base);
  const bool bf16 = w.dtype == DType::BF16;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      std::byte* panel = out + static_cast<size_t>(p) * stride;
      if (bf16)
        pack_gemm_bf16_panel(w, p, panel);
      else
        pack_gemm_q8_panel(w, p, panel);
    }
  });
  w.panels = out;
  w.panel_bytes = stride;
}

}  // namespace dsv2
