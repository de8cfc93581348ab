// Rewrites a model directory with its weights in another storage type
// (`dsv2 quantize`). The output is a Hugging Face directory transformers loads.
#pragma once

#include <functional>
#include <string>

#include "core/dtype.h"

namespace dsv2 {

// Every weight matrix the model reads is decoded to float32 and re-encoded as
// `target` (F32 or BF16); 1-D tensors (norms, the noaux_tc bias) are written
// as float32. float8 block scales are folded into the weights, MTP layers are
// dropped. config.json, tokenizer and generation files are carried over.
// `progress(done, total)` is called after each tensor.
void convert_model_dir(const std::string& in_dir, const std::string& out_dir, DType target,
                       const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace dsv2
