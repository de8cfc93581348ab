#include "model/shard.h"

#include <algorithm>

#include "core/error.h"

namespace dsv2 {

Split Split::even(int64_t n, int ranks, int64_t granule) {
  Split s;
  s.bounds.resize(ranks + 1);
  for (int r = 0; r < ranks; ++r) s.bounds[r] = n * r / ranks / granule * granule;
  s.bounds[ranks] = n;
  return s;
}

Split Split::times(int64_t factor) const {
  Split s = *this;
  for (int64_t& b : s.bounds) b *= factor;
  return s;
}

ShardPlan ShardPlan::whole(const Config& c) {
  ShardPlan p;
  p.experts = {c.n_routed_experts, 1, 0};
  p.heads = Split::even(c.num_attention_heads, 1);
  p.hidden = Split::even(c.hidden_size, 1);
  p.dense_width = Split::even(c.intermediate_size, 1);
  p.shared_width = Split::even(c.n_shared_experts * c.moe_intermediate_size, 1);
  p.vocab = Split::even(c.vocab_size, 1);
  p.head_outputs = p.heads.times(c.v_head_dim);
  return p;
}

ShardPlan ShardPlan::make(const Config& c, int rank, int ranks, int64_t row_granule) {
  if (c.n_routed_experts % ranks != 0)
    throw Error("the model's " + std::to_string(c.n_routed_experts) + " routed experts do not divide over " +
                std::to_string(ranks) + " ranks");
  int64_t heads = 1;  // the fewest heads whose rows start on a cut point in q_proj and kv_b_proj
  while (heads < c.num_attention_heads && ((heads * c.qk_head_dim()) % row_granule != 0 ||
                                           (heads * (c.qk_nope_head_dim + c.v_head_dim)) % row_granule != 0))
    ++heads;
  ShardPlan p;
  p.rank = rank;
  p.ranks = ranks;
  p.experts = {c.n_routed_experts, ranks, rank};
  p.heads = Split::even(c.num_attention_heads, ranks, heads);
  p.hidden = Split::even(c.hidden_size, ranks, row_granule);
  p.dense_width = Split::even(c.intermediate_size, ranks, row_granule);
  p.shared_width = Split::even(c.n_shared_experts * c.moe_intermediate_size, ranks, row_granule);
  p.vocab = Split::even(c.vocab_size, ranks, row_granule);
  p.head_outputs = p.heads.times(c.v_head_dim);
  return p;
}

ShardPlan ShardPlan::make(const Config& c, const Weights& w, const dist::Communicator& group) {
  int64_t granule = 1;
  Weights views = w;
  for_each_tensor(c, views, [&](const TensorSlot& slot) {
    if (slot.matrix) granule = std::max(granule, slot.matrix->row_granule());
  });
  ShardPlan p = make(c, group.rank(), group.size(), granule);
  p.group = &group;
  return p;
}

HeldRows held_rows(const Config& c, const ShardPlan& p, const TensorSlot& slot) {
  const int64_t rows = slot.shape[0];
  if (!p.split() || !slot.matrix) return {0, rows};
  if (slot.is_routed_expert()) return p.experts.owns(slot.routed_expert) ? HeldRows{0, rows} : HeldRows{};
  const auto ends_with = [&](const char* suffix) {
    const std::string s = suffix;
    return slot.name.size() >= s.size() && slot.name.compare(slot.name.size() - s.size(), s.size(), s) == 0;
  };
  const auto take = [&](const Split& split, int64_t rows_per_item) {
    return HeldRows{split.first(p.rank) * rows_per_item, split.count(p.rank) * rows_per_item};
  };
  const bool shared = slot.name.find(".shared_experts.") != std::string::npos;
  if (ends_with("self_attn.q_proj.weight") || ends_with("self_attn.q_b_proj.weight")) return take(p.heads, c.qk_head_dim());
  if (ends_with("self_attn.kv_b_proj.weight")) return take(p.heads, c.qk_nope_head_dim + c.v_head_dim);
  if (ends_with("self_attn.o_proj.weight") || ends_with("mlp.down_proj.weight") || ends_with("shared_experts.down_proj.weight"))
    return take(p.hidden, 1);
  if (ends_with("gate_proj.weight") || ends_with("up_proj.weight")) return take(shared ? p.shared_width : p.dense_width, 1);
  if (slot.name == "lm_head.weight") return take(p.vocab, 1);
  return {0, rows};  // small down-projections, routers, the embedding table
}

ShardMemory shard_memory(const Config& c, const ShardPlan& p, const std::function<DType(const TensorSlot&)>& dtype_of) {
  ShardMemory m;
  Weights shapes;
  for_each_tensor(c, shapes, [&](const TensorSlot& slot) {
    const DType dtype = slot.vector ? DType::F32 : dtype_of(slot);
    const int64_t cols = slot.shape.size() > 1 ? slot.shape[1] : 1;
    const int64_t bytes = stored_matrix_bytes(dtype, held_rows(c, p, slot).count, cols, c.fp8_block_rows, c.fp8_block_cols);
    if (slot.matrix == &shapes.embed_tokens) {
      m.embedding += bytes;
      if (!c.tie_word_embeddings) return;
      TensorSlot head{"lm_head.weight", slot.shape, &shapes.lm_head};  // this rank's rows of the shared table
      const int64_t head_bytes = stored_matrix_bytes(dtype, held_rows(c, p, head).count, cols, c.fp8_block_rows, c.fp8_block_cols);
      m.weights_by_dtype[dtype_name(dtype)] += head_bytes, m.weights += head_bytes;
      return;
    }
    m.weights_by_dtype[dtype_name(dtype)] += bytes;
    m.weights += bytes;
  });
  return m;
}

void shard_weights(const Config& c, const ShardPlan& p, Weights& w) {
  if (!p.split()) return;
  for_each_tensor(c, w, [&](const TensorSlot& slot) {
    if (!slot.matrix) return;
    const HeldRows held = held_rows(c, p, slot);
    *slot.matrix = held.count > 0 ? slot.matrix->row_slice(held.first, held.count) : WeightMatrix{};
  });
  if (c.tie_word_embeddings) {  // the LM head is the embedding table: this rank's rows of it
    TensorSlot head{"lm_head.weight", {c.vocab_size, c.hidden_size}, &w.lm_head};
    const HeldRows held = held_rows(c, p, head);
    w.lm_head = w.embed_tokens.row_slice(held.first, held.count);
  }
}

}  // namespace dsv2
