#include "model/config.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint.h"

namespace dsv2 {

namespace {

using nlohmann::json;

// Typed field access: absent or null keeps the default, a wrong type is an error.
class Fields {
 public:
  Fields(const json& j, std::string file) : j_(j), file_(std::move(file)) {}

  bool present(const char* name) const { return j_.contains(name) && !j_[name].is_null(); }
  [[noreturn]] void fail(const std::string& name, const std::string& why) const {
    throw Error(file_ + ": field '" + name + "' " + why);
  }
  void get(const char* name, int64_t& out) const {
    if (!present(name)) return;
    const auto& v = j_[name];
    if (v.is_number_integer()) {
      out = v.get<int64_t>();
    } else if (v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>()))) {
      out = static_cast<int64_t>(v.get<double>());
    } else {
      fail(name, "must be an integer, got " + v.dump());
    }
  }
  void get(const char* name, double& out) const {
    if (!present(name)) return;
    if (!j_[name].is_number()) fail(name, "must be a number, got " + j_[name].dump());
    out = j_[name].get<double>();
  }
  void get(const char* name, bool& out) const {
    if (!present(name)) return;
    if (!j_[name].is_boolean()) fail(name, "must be true or false, got " + j_[name].dump());
    out = j_[name].get<bool>();
  }
  void get(const char* name, std::string& out) const {
    if (!present(name)) return;
    if (!j_[name].is_string()) fail(name, "must be a string, got " + j_[name].dump());
    out = j_[name].get<std::string>();
  }
  void positive(const char* name, int64_t value) const {
    if (value <= 0) fail(name, "must be positive, got " + std::to_string(value));
  }
  void non_negative(const char* name, int64_t value) const {
    if (value < 0) fail(name, "must not be negative, got " + std::to_string(value));
  }

 private:
  const json& j_;
  std::string file_;
};

void set_model_defaults(Config& c) {
  // Defaults of DeepSeek's configuration_deepseek.py for each model type.
  if (c.model_type == "deepseek_v3") {
    c.vocab_size = 129280, c.hidden_size = 7168, c.intermediate_size = 18432, c.moe_intermediate_size = 2048;
    c.num_hidden_layers = 61, c.num_nextn_predict_layers = 1, c.num_attention_heads = 128;
    c.q_lora_rank = 1536, c.kv_lora_rank = 512, c.qk_nope_head_dim = 128, c.qk_rope_head_dim = 64, c.v_head_dim = 128;
    c.n_routed_experts = 256, c.n_shared_experts = 1, c.num_experts_per_tok = 8, c.n_group = 8, c.topk_group = 4;
    c.topk_method = "noaux_tc", c.scoring_func = "sigmoid", c.norm_topk_prob = true, c.routed_scaling_factor = 2.5;
    c.first_k_dense_replace = 3, c.max_position_embeddings = 4096, c.bos_token_id = 0, c.eos_token_ids = {1};
  } else {
    c.vocab_size = 102400, c.hidden_size = 4096, c.intermediate_size = 11008, c.moe_intermediate_size = 1407;
    c.num_hidden_layers = 30, c.num_attention_heads = 32;
    c.q_lora_rank = 1536, c.kv_lora_rank = 512, c.qk_nope_head_dim = 128, c.qk_rope_head_dim = 64, c.v_head_dim = 128;
    c.n_routed_experts = 0, c.n_shared_experts = 0, c.num_experts_per_tok = 0;
    c.topk_method = "greedy", c.scoring_func = "softmax", c.routed_scaling_factor = 1.0;
    c.max_position_embeddings = 2048, c.bos_token_id = 100000, c.eos_token_ids = {100001};
  }
}

void parse_rope_scaling(const json& j, const std::string& file, RopeScaling& r) {
  if (!j.is_object()) throw Error(file + ": field 'rope_scaling' must be an object or null");
  const Fields f(j, file);
  f.get("type", r.type);
  f.get("rope_type", r.type);  // newer transformers spell it rope_type
  if (r.type == "default") r.type.clear();
  if (r.type != "yarn" && !r.type.empty())
    throw Error(file + ": field 'rope_scaling.type' is '" + r.type + "'; DeepSeek models use 'yarn' (or no scaling)");
  f.get("factor", r.factor);
  f.get("original_max_position_embeddings", r.original_max_position_embeddings);
  f.get("beta_fast", r.beta_fast);
  f.get("beta_slow", r.beta_slow);
  f.get("mscale", r.mscale);
  f.get("mscale_all_dim", r.mscale_all_dim);
  if (!(r.factor > 0)) throw Error(file + ": field 'rope_scaling.factor' must be positive");
  if (r.original_max_position_embeddings <= 0)
    throw Error(file + ": field 'rope_scaling.original_max_position_embeddings' must be positive");
  if (!(r.beta_fast > 0) || !(r.beta_slow > 0)) throw Error(file + ": fields 'rope_scaling.beta_fast/beta_slow' must be positive");
}

}  // namespace

Config parse_config(const std::string& json_text, const std::string& file) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(file + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(file + ": not a JSON object");
  const Fields f(j, file);

  Config c;
  f.get("model_type", c.model_type);
  if (c.model_type != "deepseek_v2" && c.model_type != "deepseek_v3")
    f.fail("model_type", "is '" + c.model_type + "'; dsv2 runs 'deepseek_v2' and 'deepseek_v3'");
  set_model_defaults(c);

  f.get("vocab_size", c.vocab_size);
  f.get("hidden_size", c.hidden_size);
  f.get("intermediate_size", c.intermediate_size);
  f.get("moe_intermediate_size", c.moe_intermediate_size);
  f.get("num_hidden_layers", c.num_hidden_layers);
  f.get("num_nextn_predict_layers", c.num_nextn_predict_layers);
  f.get("num_attention_heads", c.num_attention_heads);
  if (j.contains("q_lora_rank") && j["q_lora_rank"].is_null()) c.q_lora_rank = 0;
  f.get("q_lora_rank", c.q_lora_rank);
  f.get("kv_lora_rank", c.kv_lora_rank);
  f.get("qk_nope_head_dim", c.qk_nope_head_dim);
  f.get("qk_rope_head_dim", c.qk_rope_head_dim);
  f.get("v_head_dim", c.v_head_dim);
  if (j.contains("n_routed_experts") && j["n_routed_experts"].is_null()) c.n_routed_experts = 0;
  if (j.contains("n_shared_experts") && j["n_shared_experts"].is_null()) c.n_shared_experts = 0;
  f.get("n_routed_experts", c.n_routed_experts);
  f.get("n_shared_experts", c.n_shared_experts);
  f.get("num_experts_per_tok", c.num_experts_per_tok);
  f.get("n_group", c.n_group);
  f.get("topk_group", c.topk_group);
  f.get("topk_method", c.topk_method);
  if (c.topk_method == "gready") c.topk_method = "greedy";  // the misspelt default of DeepSeek's V2 code
  f.get("scoring_func", c.scoring_func);
  f.get("norm_topk_prob", c.norm_topk_prob);
  f.get("routed_scaling_factor", c.routed_scaling_factor);
  f.get("first_k_dense_replace", c.first_k_dense_replace);
  f.get("moe_layer_freq", c.moe_layer_freq);
  f.get("rms_norm_eps", c.rms_norm_eps);
  f.get("rope_theta", c.rope_theta);
  f.get("max_position_embeddings", c.max_position_embeddings);
  f.get("tie_word_embeddings", c.tie_word_embeddings);
  if (f.present("architectures") && j["architectures"].is_array())
    for (const auto& a : j["architectures"])
      if (a.is_string() && a.get<std::string>().find("ForSequenceClassification") != std::string::npos) {
        c.num_labels = 2;  // transformers' default
        f.get("num_labels", c.num_labels);
        if (c.num_labels != 1)
          f.fail("num_labels", "is " + std::to_string(c.num_labels) +
                                   "; dsv2 reads sequence classifiers with one label (a reward model's scalar score)");
      }
  f.get("bos_token_id", c.bos_token_id);
  if (f.present("eos_token_id")) {
    const auto& eos = j["eos_token_id"];
    c.eos_token_ids.clear();
    if (eos.is_number_integer()) {
      c.eos_token_ids.push_back(eos.get<int64_t>());
    } else if (eos.is_array()) {
      for (const auto& e : eos) {
        if (!e.is_number_integer()) f.fail("eos_token_id", "must be an integer or a list of integers");
        c.eos_token_ids.push_back(e.get<int64_t>());
      }
    } else {
      f.fail("eos_token_id", "must be an integer or a list of integers");
    }
  }
  if (f.present("rope_scaling")) parse_rope_scaling(j["rope_scaling"], file, c.rope_scaling);
  // transformers 5 writes RoPE settings (theta included) as one "rope_parameters" object.
  if (f.present("rope_parameters")) {
    parse_rope_scaling(j["rope_parameters"], file, c.rope_scaling);
    Fields(j["rope_parameters"], file).get("rope_theta", c.rope_theta);
  }
  f.get("rope_interleave", c.rope_interleave);

  std::string hidden_act = "silu";
  f.get("hidden_act", hidden_act);
  if (hidden_act != "silu") f.fail("hidden_act", "is '" + hidden_act + "'; DeepSeek models use 'silu'");
  bool attention_bias = false;
  f.get("attention_bias", attention_bias);
  if (attention_bias) f.fail("attention_bias", "is true; DeepSeek's attention projections have no biases");
  if (f.present("quantization_config")) {
    const auto& q = j["quantization_config"];
    if (!q.is_object()) f.fail("quantization_config", "must be an object");
    if (q.contains("weight_block_size")) {
      const auto& b = q["weight_block_size"];
      if (!b.is_array() || b.size() != 2 || !b[0].is_number_unsigned() || !b[1].is_number_unsigned() ||
          b[0].get<int64_t>() <= 0 || b[1].get<int64_t>() <= 0)
        f.fail("quantization_config.weight_block_size", "must be two positive integers");
      c.fp8_block_rows = b[0].get<int64_t>();
      c.fp8_block_cols = b[1].get<int64_t>();
    }
  }

  // Validation: sizes first, then the MoE routing settings that depend on them.
  f.positive("vocab_size", c.vocab_size);
  f.positive("hidden_size", c.hidden_size);
  f.positive("num_hidden_layers", c.num_hidden_layers);
  f.non_negative("num_nextn_predict_layers", c.num_nextn_predict_layers);
  f.positive("num_attention_heads", c.num_attention_heads);
  f.non_negative("q_lora_rank", c.q_lora_rank);
  f.positive("kv_lora_rank", c.kv_lora_rank);
  f.non_negative("qk_nope_head_dim", c.qk_nope_head_dim);
  f.positive("qk_rope_head_dim", c.qk_rope_head_dim);
  if (c.qk_rope_head_dim % 2) f.fail("qk_rope_head_dim", "must be even (RoPE rotates pairs), got " + std::to_string(c.qk_rope_head_dim));
  if (c.qk_rope_head_dim > 512) f.fail("qk_rope_head_dim", "must be at most 512, got " + std::to_string(c.qk_rope_head_dim));
  f.positive("v_head_dim", c.v_head_dim);
  f.positive("max_position_embeddings", c.max_position_embeddings);
  if (!(c.rms_norm_eps > 0)) f.fail("rms_norm_eps", "must be positive");
  if (!(c.rope_theta > 0)) f.fail("rope_theta", "must be positive");
  f.non_negative("first_k_dense_replace", c.first_k_dense_replace);
  f.positive("moe_layer_freq", c.moe_layer_freq);
  f.non_negative("n_routed_experts", c.n_routed_experts);
  f.non_negative("n_shared_experts", c.n_shared_experts);
  bool any_dense = false;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) any_dense |= !c.is_moe_layer(l);
  if (any_dense) f.positive("intermediate_size", c.intermediate_size);
  if (c.n_routed_experts > 0) {
    f.positive("moe_intermediate_size", c.moe_intermediate_size);
    f.positive("num_experts_per_tok", c.num_experts_per_tok);
    if (c.num_experts_per_tok > c.n_routed_experts)
      f.fail("num_experts_per_tok", "is " + std::to_string(c.num_experts_per_tok) + " but there are only " +
                                        std::to_string(c.n_routed_experts) + " routed experts");
    if (c.topk_method != "greedy" && c.topk_method != "group_limited_greedy" && c.topk_method != "noaux_tc")
      f.fail("topk_method", "is '" + c.topk_method + "'; expected greedy, group_limited_greedy or noaux_tc");
    if (c.scoring_func != "softmax" && c.scoring_func != "sigmoid")
      f.fail("scoring_func", "is '" + c.scoring_func + "'; expected softmax or sigmoid");
    if (c.topk_method != "greedy") {
      f.positive("n_group", c.n_group);
      if (c.n_routed_experts % c.n_group)
        f.fail("n_group", std::to_string(c.n_group) + " does not divide n_routed_experts " + std::to_string(c.n_routed_experts));
      f.positive("topk_group", c.topk_group);
      if (c.topk_group > c.n_group)
        f.fail("topk_group", "is " + std::to_string(c.topk_group) + " but n_group is " + std::to_string(c.n_group));
      const int64_t per_group = c.n_routed_experts / c.n_group;
      if (c.num_experts_per_tok > c.topk_group * per_group)
        f.fail("num_experts_per_tok", "exceeds the experts in the topk_group selected groups");
      if (c.topk_method == "noaux_tc" && per_group < 2)
        f.fail("n_group", "leaves fewer than 2 experts per group; noaux_tc scores a group by its top-2 experts");
    }
  }
  if (c.vocab_size > INT32_MAX) f.fail("vocab_size", "is too large");
  return c;
}

Config load_config(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "config.json").string();
  return parse_config(read_text_file(file), file);
}

std::string config_json(const Config& c) {
  nlohmann::ordered_json j;
  const std::string family = c.model_type == "deepseek_v3" ? "DeepseekV3" : "DeepseekV2";
  j["architectures"] = {family + (c.is_reward_model() ? "ForSequenceClassification" : "ForCausalLM")};
  j["model_type"] = c.model_type;
  if (c.is_reward_model()) j["num_labels"] = c.num_labels;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_attention_heads;
  j["q_lora_rank"] = c.q_lora_rank > 0 ? nlohmann::ordered_json(c.q_lora_rank) : nlohmann::ordered_json(nullptr);
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["n_routed_experts"] = c.n_routed_experts > 0 ? nlohmann::ordered_json(c.n_routed_experts) : nlohmann::ordered_json(nullptr);
  j["n_shared_experts"] = c.n_shared_experts > 0 ? nlohmann::ordered_json(c.n_shared_experts) : nlohmann::ordered_json(nullptr);
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["topk_method"] = c.topk_method;
  j["scoring_func"] = c.scoring_func;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  if (c.rope_scaling.type == "yarn") {
    j["rope_scaling"] = {{"type", "yarn"}, {"factor", c.rope_scaling.factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings},
                         {"beta_fast", c.rope_scaling.beta_fast}, {"beta_slow", c.rope_scaling.beta_slow},
                         {"mscale", c.rope_scaling.mscale}, {"mscale_all_dim", c.rope_scaling.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["attention_bias"] = false;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids.size() == 1 ? nlohmann::ordered_json(c.eos_token_ids[0]) : nlohmann::ordered_json(c.eos_token_ids);
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
}

}  // namespace dsv2
