#include "model/weights.h"

#include <cstring>

#include "core/error.h"
#include "io/checkpoint.h"
#include "ops/kernels.h"

namespace dsv2 {

namespace {

// routed_expert: the expert's index, or -1 for dense and shared-expert MLPs.
void visit_mlp(const std::string& prefix, int64_t hidden, int64_t width, MlpWeights& m, int64_t routed_expert,
               const std::function<void(const TensorSlot&)>& visit) {
  visit({prefix + "gate_proj.weight", {width, hidden}, &m.gate_proj, nullptr, routed_expert});
  visit({prefix + "up_proj.weight", {width, hidden}, &m.up_proj, nullptr, routed_expert});
  visit({prefix + "down_proj.weight", {hidden, width}, &m.down_proj, nullptr, routed_expert});
}

void visit_attention(const Config& c, const std::string& prefix, AttentionWeights& a,
                     const std::function<void(const TensorSlot&)>& visit) {
  const int64_t d = c.hidden_size, heads = c.num_attention_heads;
  if (c.q_lora_rank > 0) {
    visit({prefix + "q_a_proj.weight", {c.q_lora_rank, d}, &a.q_a_proj});
    visit({prefix + "q_a_layernorm.weight", {c.q_lora_rank}, nullptr, &a.q_a_layernorm});
    visit({prefix + "q_b_proj.weight", {heads * c.qk_head_dim(), c.q_lora_rank}, &a.q_b_proj});
  } else {
    visit({prefix + "q_proj.weight", {heads * c.qk_head_dim(), d}, &a.q_proj});
  }
  visit({prefix + "kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, d}, &a.kv_a_proj_with_mqa});
  visit({prefix + "kv_a_layernorm.weight", {c.kv_lora_rank}, nullptr, &a.kv_a_layernorm});
  visit({prefix + "kv_b_proj.weight", {heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}, &a.kv_b_proj});
  visit({prefix + "o_proj.weight", {d, heads * c.v_head_dim}, &a.o_proj});
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void to_float_vector(const TensorInfo& t, std::vector<float>& out) {
  // Float32 tensors usually are used in place; this copy serves the other dtypes.
  out.resize(t.numel());
  const auto* p = t.data;
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype) {
      case DType::F32: { float v; std::memcpy(&v, p + 4 * i, 4); out[i] = v; break; }
      case DType::F64: { double v; std::memcpy(&v, p + 8 * i, 8); out[i] = static_cast<float>(v); break; }
      case DType::BF16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); out[i] = bf16_to_float(v); break; }
      case DType::F16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); out[i] = f16_to_float(v); break; }
      case DType::F8_E4M3: out[i] = fp8_e4m3_to_float(static_cast<uint8_t>(p[i])); break;
      default: throw Error(*t.file + ": tensor '" + t.name + "' has non-float dtype " + dtype_name(t.dtype));
    }
  }
}

}  // namespace

void visit_decoder_layer(const Config& c, int64_t l, const std::string& p, LayerWeights& layer,
                         const std::function<void(const TensorSlot&)>& visit) {
  const int64_t d = c.hidden_size;
  layer.is_moe = c.is_moe_layer(l);
  visit({p + "input_layernorm.weight", {d}, nullptr, &layer.input_layernorm});
  visit_attention(c, p + "self_attn.", layer.self_attn, visit);
  visit({p + "post_attention_layernorm.weight", {d}, nullptr, &layer.post_attention_layernorm});
  if (!layer.is_moe) {
    visit_mlp(p + "mlp.", d, c.intermediate_size, layer.mlp, -1, visit);
    return;
  }
  visit({p + "mlp.gate.weight", {c.n_routed_experts, d}, &layer.moe.gate});
  if (c.topk_method == "noaux_tc")
    visit({p + "mlp.gate.e_score_correction_bias", {c.n_routed_experts}, nullptr, &layer.moe.e_score_correction_bias});
  layer.moe.experts.resize(c.n_routed_experts);
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    visit_mlp(p + "mlp.experts." + std::to_string(e) + ".", d, c.moe_intermediate_size, layer.moe.experts[e], e, visit);
  if (c.n_shared_experts > 0)
    visit_mlp(p + "mlp.shared_experts.", d, c.n_shared_experts * c.moe_intermediate_size, layer.moe.shared_experts, -1, visit);
}

void for_each_tensor(const Config& c, Weights& w, const std::function<void(const TensorSlot&)>& visit) {
  const int64_t d = c.hidden_size;
  w.layers.resize(c.num_hidden_layers);
  visit({"model.embed_tokens.weight", {c.vocab_size, d}, &w.embed_tokens});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    visit_decoder_layer(c, l, "model.layers." + std::to_string(l) + ".", w.layers[l], visit);
  visit({"model.norm.weight", {d}, nullptr, &w.norm});
  if (!c.tie_word_embeddings) visit({"lm_head.weight", {c.vocab_size, d}, &w.lm_head});
  // Last, so that a causal LM's tensors come first in the same order (a reward
  // model starts from one: train/weights_io.cpp).
  if (c.is_reward_model()) visit({"score.weight", {c.num_labels, d}, &w.score});
}

void visit_mtp_layer(const Config& c, int64_t depth, MtpLayerWeights& w,
                     const std::function<void(const TensorSlot&)>& visit) {
  const int64_t d = c.hidden_size, layer = c.num_hidden_layers + depth;
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  visit({p + "enorm.weight", {d}, nullptr, &w.enorm});
  visit({p + "hnorm.weight", {d}, nullptr, &w.hnorm});
  visit({p + "eh_proj.weight", {d, 2 * d}, &w.eh_proj});
  visit_decoder_layer(c, layer, p, w.block, visit);
  visit({p + "shared_head.norm.weight", {d}, nullptr, &w.shared_head_norm});
}

void for_each_trained_tensor(const Config& c, Weights& w, const std::function<void(const TensorSlot&)>& visit) {
  for_each_tensor(c, w, visit);
  w.mtp.resize(c.num_nextn_predict_layers);
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) visit_mtp_layer(c, k, w.mtp[k], visit);
}

ParameterCounts count_parameters(const Config& config) {
  Weights shapes;
  int64_t total = 0, routed = 0;
  for_each_tensor(config, shapes, [&](const TensorSlot& slot) {
    int64_t n = 1;
    for (int64_t d : slot.shape) n *= d;
    total += n;
    if (slot.is_routed_expert()) routed += n;
  });
  const int64_t active_routed = config.n_routed_experts ? routed / config.n_routed_experts * config.num_experts_per_tok : 0;
  return {total, total - routed + active_routed};
}

void bind_f32_buffer(const Config& config, Weights& weights, const float* buffer, const std::vector<int64_t>& offsets) {
  size_t i = 0;
  for_each_trained_tensor(config, weights, [&](const TensorSlot& slot) {
    const int64_t offset = offsets.at(i++);
    if (offset < 0) return;
    int64_t n = 1;
    for (int64_t d : slot.shape) n *= d;
    if (slot.vector) {
      *slot.vector = {buffer + offset, n};
    } else {
      *slot.matrix = WeightMatrix{};
      slot.matrix->dtype = DType::F32;
      slot.matrix->rows = slot.shape[0];
      slot.matrix->cols = slot.shape[1];
      slot.matrix->data = reinterpret_cast<const std::byte*>(buffer + offset);
    }
  });
  if (config.tie_word_embeddings) weights.lm_head = weights.embed_tokens;
}

void bind_tensor(const Config& config, const Checkpoint& checkpoint, const TensorSlot& slot,
                 std::vector<std::vector<float>>& converted) {
  const TensorInfo* t = checkpoint.find(slot.name);
  if (!t) throw Error(checkpoint.dir() + ": missing tensor '" + slot.name + "' (expected shape " + shape_text(slot.shape) + ")");
  std::vector<int64_t> stored_shape = slot.shape;
  if (!slot.vector) stored_shape[1] = stored_columns(t->dtype, stored_shape[1]);
  if (t->shape != stored_shape)
    throw Error(*t->file + ": tensor '" + slot.name + "' has shape " + t->shape_string() + ", expected " +
                shape_text(stored_shape) + " from config.json" + (t->dtype == DType::U8 ? " (q4: two values per byte)" : ""));
  if (slot.vector) {
    if (t->dtype == DType::F32 && reinterpret_cast<uintptr_t>(t->data) % alignof(float) == 0) {
      *slot.vector = {reinterpret_cast<const float*>(t->data), t->numel()};
    } else {
      converted.emplace_back();
      to_float_vector(*t, converted.back());
      *slot.vector = {converted.back().data(), t->numel()};
    }
    return;
  }
  WeightMatrix& m = *slot.matrix;
  if (t->dtype != DType::F32 && t->dtype != DType::BF16 && t->dtype != DType::F16 && t->dtype != DType::F8_E4M3 &&
      t->dtype != DType::I8 && t->dtype != DType::U8)
    throw Error(*t->file + ": tensor '" + slot.name + "' has dtype " + dtype_name(t->dtype) +
                "; weights must be F32, BF16, F16, F8_E4M3, I8 (dsv2 q8) or U8 (dsv2 q4)");
  m.dtype = t->dtype;
  m.rows = slot.shape[0];
  m.cols = slot.shape[1];
  m.data = t->data;
  const bool block_quantized = is_block_quantized(t->dtype);
  if (t->dtype == DType::F8_E4M3 || block_quantized) {
    const std::string scale_name = slot.name + (block_quantized ? "_scale" : "_scale_inv");
    const TensorInfo* s = checkpoint.find(scale_name);
    if (!s)
      throw Error(checkpoint.dir() + ": " + (block_quantized ? "quantized" : "float8") + " tensor '" + slot.name +
                  "' has no '" + scale_name + "'");
    if (block_quantized && m.cols % kQuantBlock != 0)
      throw Error(*t->file + ": quantized tensor '" + slot.name + "' has " + std::to_string(m.cols) +
                  " columns, not a multiple of the block size " + std::to_string(kQuantBlock));
    m.block_rows = block_quantized ? 1 : config.fp8_block_rows;
    m.block_cols = block_quantized ? kQuantBlock : config.fp8_block_cols;
    const std::vector<int64_t> scale_shape{(m.rows + m.block_rows - 1) / m.block_rows,
                                           (m.cols + m.block_cols - 1) / m.block_cols};
    // q8/q4 scales are float16 since issue 17; files written before hold float32 ones and still load.
    const bool scale_dtype_ok = s->dtype == DType::F32 || (block_quantized && s->dtype == DType::F16);
    if (!scale_dtype_ok || s->shape != scale_shape)
      throw Error(*s->file + ": tensor '" + scale_name + "' must be " + (block_quantized ? "F16 or F32" : "F32") +
                  " of shape " + shape_text(scale_shape) + ", got " + dtype_name(s->dtype) + " " + s->shape_string());
    if (reinterpret_cast<uintptr_t>(s->data) % dtype_size(s->dtype) != 0)
      throw Error(*s->file + ": tensor '" + scale_name + "' is not " + std::to_string(dtype_size(s->dtype)) + "-byte aligned");
    m.scale_inv = s->data;
    m.scale_dtype = s->dtype;
  }
  if (reinterpret_cast<uintptr_t>(t->data) % dtype_size(t->dtype) != 0)  // (1 for q8 and q4)
    throw Error(*t->file + ": tensor '" + slot.name + "' is not aligned to its element size");
}

Weights load_weights(const Config& config, const Checkpoint& checkpoint) {
  Weights w;
  for_each_tensor(config, w, [&](const TensorSlot& slot) { bind_tensor(config, checkpoint, slot, w.converted); });
  if (config.tie_word_embeddings) w.lm_head = w.embed_tokens;
  return w;
}

}  // namespace dsv2
