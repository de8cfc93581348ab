// dsv2 info: what a model directory holds, read from config.json and the
// safetensors headers only (weights are mapped, never read); or, with --like,
// what a published DeepSeek shape stored in --dtype would hold. With
// --expert-parallel N, the memory each of N ranks needs to serve it.
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/convert.h"
#include "model/latent_cache.h"
#include "model/random_model.h"
#include "model/shard.h"
#include "model/weights.h"

namespace dsv2::cli {

namespace {

// 1234567 -> "1.23M" (step 1000) or, for bytes, "1.18 MiB" (step 1024).
std::string with_unit(double value, bool binary) {
  const char* decimal[] = {"", "K", "M", "B", "T"};
  const char* iec[] = {" B", " KiB", " MiB", " GiB", " TiB"};
  const double step = binary ? 1024.0 : 1000.0;
  int u = 0;
  while (value >= step && u < 4) value /= step, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f%s" : "%.0f%s", value, binary ? iec[u] : decimal[u]);
  return buf;
}
std::string human(double value) { return with_unit(value, false); }
std::string bytes(double value) { return with_unit(value, true); }

std::string by_dtype(const std::map<std::string, int64_t>& bytes_by_dtype) {
  std::string text;
  for (const auto& [dtype, n] : bytes_by_dtype) text += (text.empty() ? "" : ", ") + dtype + " " + bytes(double(n));
  return text;
}

// Per rank of N: the weights it reads (by dtype), the embedding table it maps,
// the latent cache it keeps (every rank caches every sequence's latents).
void print_ranks(const Config& c, int ranks, CacheType cache_type, const std::function<DType(const TensorSlot&)>& dtype_of) {
  bool fp8 = false;
  Weights shapes;
  for_each_tensor(c, shapes, [&](const TensorSlot& slot) { fp8 |= slot.matrix && dtype_of(slot) == DType::F8_E4M3; });
  const int64_t cache = LatentCache::bytes_per_token(c, cache_type) * 1024;
  std::printf("per rank of %d  routed experts %lld each; attention by heads, MLPs and LM head by rows; latent cache on "
              "every rank, %s per 1K tokens (%s)\n",
              ranks, (long long)(c.n_routed_experts / ranks), bytes(double(cache)).c_str(), cache_type_name(cache_type).c_str());
  for (int r = 0; r < ranks; ++r) {
    const ShardMemory m = shard_memory(c, ShardPlan::make(c, r, ranks, fp8 ? c.fp8_block_rows : 1), dtype_of);
    if (ranks > 8 && r > 0 && r < ranks - 1) continue;  // first and last are enough beyond 8
    std::printf("  rank %-3d       weights %s (%s) + embedding table %s mapped, one row read per token\n", r,
                bytes(double(m.weights)).c_str(), by_dtype(m.weights_by_dtype).c_str(), bytes(double(m.embedding)).c_str());
  }
}

}  // namespace

int run_info(int argc, char** argv) {
  Args args(argc, argv, "dsv2 info (-m DIR | --like NAME [--dtype TYPE]) [--expert-parallel N] [--cache-type TYPE]",
            {kModelOption,
             {"like", 0, true, "NAME      a published shape instead of a model directory: deepseek-v2-lite, deepseek-v2, deepseek-v3"},
             {"dtype", 0, true, "TYPE      with --like: weights stored as bf16 (default), f32, q8, q4 or fp8 (as dsv2 init writes them)"},
             {"expert-parallel", 0, true, "N         the memory each of N ranks needs (mpirun -np N dsv2 serve ...)"},
             {"cache-type", 0, true, "TYPE      latent cache type for the per-rank figure: f32 (default), q8 or q4"}});
  if (args.print_help_if_requested()) return 0;
  const long long ranks = args.get_int("expert-parallel", 0);
  if (args.has("expert-parallel") && (ranks < 1 || ranks > 65536)) throw UsageError("option --expert-parallel: must be between 1 and 65536");
  const CacheType cache_type = cache_type_option(args);
  std::string dir;
  Config c;
  std::unique_ptr<Checkpoint> checkpoint;
  std::map<std::string, int64_t> bytes_by_dtype;
  std::function<DType(const TensorSlot&)> dtype_of;
  Weights shapes;
  if (args.has("like")) {
    if (args.has("model")) throw UsageError("give one of -m and --like");
    const DType target = parse_weight_type("dtype", args.get("dtype", "bf16"));
    c = published_config(args.get("like"));
    dir = args.get("like") + " (shapes only, " + args.get("dtype", "bf16") + ")";
    dtype_of = [target](const TensorSlot& slot) { return stored_matrix_type(slot.name, slot.shape, target); };
    for_each_tensor(c, shapes, [&](const TensorSlot& slot) {
      const DType dtype = slot.vector ? DType::F32 : dtype_of(slot);
      bytes_by_dtype[dtype_name(dtype)] +=
          stored_matrix_bytes(dtype, slot.shape[0], slot.shape.size() > 1 ? slot.shape[1] : 1, c.fp8_block_rows, c.fp8_block_cols);
    });
  } else {
    if (args.has("dtype")) throw UsageError("option --dtype goes with --like");
    dir = model_dir_option(args);
    c = load_config(dir);
    checkpoint = std::make_unique<Checkpoint>(dir);
    // Validates every tensor exactly as inference would.
    (void)load_weights(c, *checkpoint);
    dtype_of = [&checkpoint](const TensorSlot& slot) { return checkpoint->find(slot.name)->dtype; };
  }
  if (ranks > 0 && c.n_routed_experts % ranks != 0)
    throw UsageError("option --expert-parallel: the model's " + std::to_string(c.n_routed_experts) +
                     " routed experts do not divide over " + std::to_string(ranks) + " ranks");

  const ParameterCounts counts = count_parameters(c);
  const int64_t total = counts.total, active = counts.active;
  int64_t ignored = 0;
  if (checkpoint) {
    std::set<std::string> used;
    for_each_tensor(c, shapes, [&](const TensorSlot& slot) {
      for (const std::string& name : {slot.name, slot.name + "_scale_inv", slot.name + "_scale"})
        if (const TensorInfo* t = checkpoint->find(name)) {
          bytes_by_dtype[dtype_name(t->dtype)] += static_cast<int64_t>(t->nbytes);
          used.insert(name);
        }
    });
    for (const auto& file : checkpoint->files())
      for (const auto& t : file->tensors()) ignored += !used.count(t.name);
  }
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) moe_layers += c.is_moe_layer(l);

  std::printf("model            %s (%s)\n", dir.c_str(), c.model_type.c_str());
  std::printf("layers           %lld (%lld dense, %lld MoE), hidden %lld, vocab %lld\n", (long long)c.num_hidden_layers,
              (long long)(c.num_hidden_layers - moe_layers), (long long)moe_layers, (long long)c.hidden_size,
              (long long)c.vocab_size);
  std::printf("attention        MLA, %lld heads, q_lora_rank %s, kv_lora_rank %lld, qk_nope %lld, qk_rope %lld, v %lld\n",
              (long long)c.num_attention_heads, c.q_lora_rank ? std::to_string(c.q_lora_rank).c_str() : "none",
              (long long)c.kv_lora_rank, (long long)c.qk_nope_head_dim, (long long)c.qk_rope_head_dim, (long long)c.v_head_dim);
  if (c.rope_scaling.type == "yarn")
    std::printf("rope             theta %g, YaRN factor %g (original %lld), mscale %g, mscale_all_dim %g\n", c.rope_theta,
                c.rope_scaling.factor, (long long)c.rope_scaling.original_max_position_embeddings, c.rope_scaling.mscale,
                c.rope_scaling.mscale_all_dim);
  else
    std::printf("rope             theta %g\n", c.rope_theta);
  if (c.n_routed_experts)
    std::printf("moe              %lld routed + %lld shared experts (width %lld), %lld active; %s, %s, norm_topk_prob %s, "
                "routed_scaling_factor %g, groups %lld/%lld\n",
                (long long)c.n_routed_experts, (long long)c.n_shared_experts, (long long)c.moe_intermediate_size,
                (long long)c.num_experts_per_tok, c.topk_method.c_str(), c.scoring_func.c_str(),
                c.norm_topk_prob ? "true" : "false", c.routed_scaling_factor, (long long)c.topk_group, (long long)c.n_group);
  std::printf("parameters       %s total, %s active per token (%lld / %lld)\n", human(double(total)).c_str(),
              human(double(active)).c_str(), (long long)total, (long long)active);
  std::printf("weight bytes     %s\n", by_dtype(bytes_by_dtype).c_str());
  if (ignored) std::printf("ignored tensors  %lld (e.g. multi-token-prediction layers, unused for inference)\n", (long long)ignored);
  const int64_t latent = LatentCache::bytes_per_token(c), mha = LatentCache::mha_bytes_per_token(c, 4);
  std::printf("kv cache/token   MLA latent (%lld + %lld) x %lld layers = %s at f32 (%s as q8, %s as q4); MHA would need "
              "%s at f32 (%.1fx more)\n",
              (long long)c.kv_lora_rank, (long long)c.qk_rope_head_dim, (long long)c.num_hidden_layers,
              bytes(double(latent)).c_str(), bytes(double(LatentCache::bytes_per_token(c, CacheType::kQ8))).c_str(),
              bytes(double(LatentCache::bytes_per_token(c, CacheType::kQ4))).c_str(), bytes(double(mha)).c_str(),
              double(mha) / double(latent));
  if (ranks > 0) print_ranks(c, static_cast<int>(ranks), cache_type, dtype_of);
  return 0;
}

}  // namespace dsv2::cli
