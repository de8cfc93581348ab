// dsv2 info: what a model directory holds, read from config.json and the
// safetensors headers only (weights are mapped, never read).
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/latent_cache.h"
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

}  // namespace

int run_info(int argc, char** argv) {
  Args args(argc, argv, "dsv2 info -m DIR", {kModelOption});
  if (args.print_help_if_requested()) return 0;
  const std::string dir = model_dir_option(args);
  const Config c = load_config(dir);
  const Checkpoint checkpoint(dir);
  // Validates every tensor exactly as inference would.
  (void)load_weights(c, checkpoint);

  const ParameterCounts counts = count_parameters(c);
  const int64_t total = counts.total, active = counts.active;
  Weights shapes;
  std::map<std::string, int64_t> bytes_by_dtype;
  std::set<std::string> used;
  for_each_tensor(c, shapes, [&](const TensorSlot& slot) {
    for (const std::string& name : {slot.name, slot.name + "_scale_inv", slot.name + "_scale"})
      if (const TensorInfo* t = checkpoint.find(name)) {
        bytes_by_dtype[dtype_name(t->dtype)] += static_cast<int64_t>(t->nbytes);
        used.insert(name);
      }
  });
  int64_t ignored = 0;
  for (const auto& file : checkpoint.files())
    for (const auto& t : file->tensors()) ignored += !used.count(t.name);
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
  std::string per_dtype;
  for (const auto& [dtype, n] : bytes_by_dtype) per_dtype += (per_dtype.empty() ? "" : ", ") + dtype + " " + bytes(double(n));
  std::printf("weight bytes     %s\n", per_dtype.c_str());
  if (ignored) std::printf("ignored tensors  %lld (e.g. multi-token-prediction layers, unused for inference)\n", (long long)ignored);
  const int64_t latent = LatentCache::bytes_per_token(c), mha = LatentCache::mha_bytes_per_token(c, 4);
  std::printf("kv cache/token   MLA latent (%lld + %lld) x %lld layers = %s at f32 (%s as q8, %s as q4); MHA would need "
              "%s at f32 (%.1fx more)\n",
              (long long)c.kv_lora_rank, (long long)c.qk_rope_head_dim, (long long)c.num_hidden_layers,
              bytes(double(latent)).c_str(), bytes(double(LatentCache::bytes_per_token(c, CacheType::kQ8))).c_str(),
              bytes(double(LatentCache::bytes_per_token(c, CacheType::kQ4))).c_str(), bytes(double(mha)).c_str(),
              double(mha) / double(latent));
  return 0;
}

}  // namespace dsv2::cli
