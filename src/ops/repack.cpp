// Load-time repacking (ops/repack.h): the panel formats belong to the GEMMs.
#include "ops/repack.h"

#include <cstdint>

#include "core/parallel.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_q8.h"
#include "ops/matmul.h"

namespace dsv2 {
namespace {

constexpr size_t kAlign = 64;  // each panel starts on a cache line
constexpr int64_t kLongPrompt = 1 << 20;  // a product of this many rows: a prompt's

// One panel's bytes in storage: the GEMM's panel, padded to whole cache lines.
size_t panel_stride(const WeightMatrix& w) {
  if (w.empty() || w.rows == 0) return 0;
  // The panels of the GEMM a prompt's product takes (none where that reads
  // rows: float32 products, as for bf16 in dsv2 serve).
  size_t bytes = 0;
  switch (prompt_gemm(w, kLongPrompt)) {
    case PromptGemm::kBf16: bytes = gemm_bf16_panel_bytes(w); break;
    case PromptGemm::kQ8: bytes = gemm_q8_panel_bytes(w); break;
    case PromptGemm::kFloat32: break;
  }
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

PanelFormat panel_format(const WeightMatrix& w) {
  return prompt_gemm(w, kLongPrompt) == PromptGemm::kBf16 ? PanelFormat::kBf16 : PanelFormat::kQ8;
}

int64_t panel_count(const WeightMatrix& w) { return (w.rows + kRepackRows - 1) / kRepackRows; }

}  // namespace

size_t repacked_bytes(const WeightMatrix& w) { return panel_stride(w) * static_cast<size_t>(panel_count(w)); }

void repack_rows(WeightMatrix& w, AnonymousPages& storage) {
  const size_t stride = panel_stride(w);
  if (stride == 0) return;
  static_assert(kGemmBf16PanelRows == kRepackRows && kGemmQ8PanelRows == kRepackRows);
  const int64_t panels = panel_count(w);
  storage = AnonymousPages(stride * static_cast<size_t>(panels));  // page-aligned: each panel on a cache line
  std::byte* const out = storage.data();
  const PanelFormat format = panel_format(w);
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      std::byte* panel = out + static_cast<size_t>(p) * stride;
      if (format == PanelFormat::kBf16)
        pack_gemm_bf16_panel(w, p, panel);
      else
        pack_gemm_q8_panel(w, p, panel);
    }
  });
  w.panels = out;
  w.panel_bytes = stride;
  w.panel_format = format;
}

}  // namespace dsv2
