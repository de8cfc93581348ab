// Load-time repacking of weight rows for the prompt GEMMs (`--repack`, what
// ik_llama.cpp calls run-time repacking, -rtr). gemm_bf16 and gemm_q8 read
// their weights as panels of kRepackRows interleaved rows; without repacking
// they build each panel per call from the rows, which on this machine is
// 15-18% of a 512-token prefill (32 rows read side by side wait on memory).
// Repacked once, the panels are read where they lie, one stream per panel.
//
// bf16 panels hold the rows' own values, so they replace the rows: every
// product reads them (WeightMatrix::products_read_panels, one-token products
// included), and the loader releases the rows' pages (Model::
// repack_for_prompts); repacking bf16 weights costs no memory. q8, q4 and
// float8 panels are the weights widened to bf16 (or the integer GEMM's):
// the one-token kernels keep reading the rows, so those matrices take their
// size again in memory, or more. A prompt's GEMM products are bit for bit those of
// the panels packed per call.
#pragma once

#include <cstddef>

#include "io/mapped_file.h"
#include "ops/weight_matrix.h"

namespace dsv2 {

// Bytes w's panels take for the GEMM a prompt's product on it takes here
// (prompt_gemm, ops/matmul.h; q8/q4/float8 widened to bf16 take 4 bytes per
// pair of columns), 0 where that GEMM reads rows: f32 and f16 always; bf16
// and float8 without AVX512-BF16 or with use_gemm_bf16_for_prefill off (dsv2
// serve); q8/q4 on the portable integer kernel.
size_t repacked_bytes(const WeightMatrix& w);

// Packs w's panels into new anonymous pages `storage` (it must outlive w and
// its slices) and points w.panels at them (w.panel_format: whose layout), in
// parallel over panels. Does nothing where repacked_bytes(w) is 0.
void repack_rows(WeightMatrix& w, AnonymousPages& storage);

}  // namespace dsv2
