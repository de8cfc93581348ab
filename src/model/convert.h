// Rewrites a model directory with its weights in another storage type
// (`dsv2 quantize`). The output is a Hugging Face directory transformers loads.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"

namespace dsv2 {

// fp8 weights are written as DeepSeek-V3 releases them: e4m3fn values and a
// float32 "<name>_scale_inv" per kFp8Block × kFp8Block tile.
constexpr int64_t kFp8Block = 128;

// Every weight matrix the model reads is decoded to float32 and re-encoded as
// `target`: F32, BF16, F8_E4M3 (V3's fp8 format above; embedding, LM head and
// router stay BF16), or dsv2's block-quantized I8 (q8) / U8 (q4) with a
// "<name>_scale" float16 tensor of one scale per 32 values (ops/kernels.h,
// docs/FORMATS.md). Matrices whose width is not a multiple of 32 stay BF16
// under q8/q4; under q4 the embedding and LM head are stored q8. 1-D tensors
// (norms, the noaux_tc bias) are written as float32. float8 block scales are
// folded into the weights. Complete MTP layers are converted the same way
// (their copies of the embedding and head as those); partial ones are dropped. config.json, tokenizer and
// generation files are carried over. F32 and BF16 outputs load in
// transformers; q8 and q4 are for dsv2 only.
// `progress(done, total)` is called after each tensor.
void convert_model_dir(const std::string& in_dir, const std::string& out_dir, DType target,
                       const std::function<void(int64_t, int64_t)>& progress = {});

// Load-time quantization (`--quantize TYPE` on the commands that load a
// model): every matrix re-encoded as convert_model_dir would store it, into
// buffers appended to `storage` (which must outlive the weights); matrices
// already in their target type stay views of the checkpoint.
void quantize_weights_in_memory(const Config& config, Weights& weights, DType target,
                                std::vector<std::vector<std::byte>>& storage);

// Bytes as they are produced, in safetensors order.
using ByteSink = std::function<void(const void* data, size_t bytes)>;
// One matrix encoded as `type`: its stored values, then (block-quantized and
// fp8) its scales: float16 for q8/q4, float32 for fp8.
void encode_matrix(const WeightMatrix& m, DType type, const ByteSink& append);
// Throws unless `target` is a type weights can be converted to.
void require_supported_target(DType target);

// The pieces convert_model_dir and `dsv2 init` share:
// how a matrix named `name` of logical `shape` is stored under `target`
// (q8/q4 exceptions above);
DType stored_matrix_type(const std::string& name, const std::vector<int64_t>& shape, DType target);
// the tensors it is written as: "<name>" (q4: [rows, cols / 2]) and, when
// block-quantized, "<name>_scale" [rows, cols / 32] float16 (older files: float32, still read);
void add_matrix_specs(const std::string& name, const std::vector<int64_t>& shape, DType type, std::vector<TensorSpec>& specs);
// config.json text rewritten for weights stored as `target`.
std::string config_json_for_storage(const std::string& config_text, DType target);

}  // namespace dsv2
