// Every tensor of a DeepSeek-V2/V3 model, with its Hugging Face name and shape,
// listed in ONE place: for_each_tensor. Loading, `dsv2 info` and (later) saving,
// init and the optimizer walk this list, so they cannot disagree.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "model/config.h"
#include "ops/weight_matrix.h"

namespace dsv2 {

class Checkpoint;

struct MlpWeights {  // SwiGLU: down(silu(gate·x) ⊙ up·x)
  WeightMatrix gate_proj, up_proj, down_proj;
};

struct AttentionWeights {
  WeightMatrix q_proj;              // used when q_lora_rank == 0
  WeightMatrix q_a_proj, q_b_proj;  // W_DQ, W_UQ when queries are compressed
  WeightVector q_a_layernorm;
  WeightMatrix kv_a_proj_with_mqa;  // h -> [c_kv ; k_R]
  WeightVector kv_a_layernorm;
  WeightMatrix kv_b_proj;  // c_kv -> per head [k_nope ; v]  (W_UK and W_UV stacked)
  WeightMatrix o_proj;
};

struct MoeWeights {
  WeightMatrix gate;                            // router W_g: [n_routed_experts, hidden]
  WeightVector e_score_correction_bias;  // noaux_tc only
  std::vector<MlpWeights> experts;
  MlpWeights shared_experts;  // n_shared_experts experts stored as one wider MLP
};

struct LayerWeights {
  WeightVector input_layernorm, post_attention_layernorm;
  AttentionWeights self_attn;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

// One of DeepSeek-V3's multi-token-prediction modules (model/mtp.h,
// train/mtp_train.h): the tensors it owns. Its embedding and output head are
// the main model's (the release stores copies: model.layers.<L>.embed_tokens,
// model.layers.<L>.shared_head.head).
struct MtpLayerWeights {
  WeightVector enorm, hnorm;
  WeightMatrix eh_proj;  // [d, 2d]: columns [0, d) read the embedding, [d, 2d) the hidden state
  LayerWeights block;
  WeightVector shared_head_norm;
};

struct Weights {
  WeightMatrix embed_tokens;
  std::vector<LayerWeights> layers;
  WeightVector norm;
  WeightMatrix lm_head;  // = embed_tokens when tie_word_embeddings
  WeightMatrix score;    // [num_labels, d] a reward model's head (Config::num_labels > 0), else empty
  std::vector<MtpLayerWeights> mtp;  // bound by for_each_trained_tensor only
  // 1-D tensors not stored as aligned float32 are converted into here.
  std::vector<std::vector<float>> converted;
};

// One tensor of the model: exactly one of `matrix` / `vector` is set.
struct TensorSlot {
  std::string name;
  std::vector<int64_t> shape;
  WeightMatrix* matrix = nullptr;        // used in place in its stored dtype
  WeightVector* vector = nullptr;        // small 1-D tensors, float32 (converted if stored otherwise)
  int64_t routed_expert = -1;            // the routed expert this tensor belongs to, -1 for the rest
  bool is_routed_expert() const { return routed_expert >= 0; }
};

// Sizes `weights` for `config` (layers, experts) and calls visit for every tensor
// the model reads, in checkpoint order. MTP layers are not listed: plain
// inference does not use them.
void for_each_tensor(const Config& config, Weights& weights, const std::function<void(const TensorSlot&)>& visit);

// The tensors of one decoder layer (attention, norms, dense MLP or MoE as
// config.is_moe_layer(layer) says) named under `prefix`, "model.layers.N.".
// The main model's layers and the MTP module's block (model/mtp.h) share it.
void visit_decoder_layer(const Config& config, int64_t layer, const std::string& prefix, LayerWeights& weights,
                         const std::function<void(const TensorSlot&)>& visit);

// The tensors of MTP module `depth` (0-based), model.layers.<num_hidden_layers + depth>.*,
// without the copies of the embedding and output head.
void visit_mtp_layer(const Config& config, int64_t depth, MtpLayerWeights& weights,
                     const std::function<void(const TensorSlot&)>& visit);

// for_each_tensor, then the num_nextn_predict_layers MTP modules: what training
// holds, updates and writes (inference loads the MTP layer only to draft).
void for_each_trained_tensor(const Config& config, Weights& weights, const std::function<void(const TensorSlot&)>& visit);

// Parameters the model uses (MTP layers excluded), and those one token activates:
// everything but the routed experts it does not pick.
struct ParameterCounts {
  int64_t total = 0, active = 0;
};
ParameterCounts count_parameters(const Config& config);

// Points every slot at float32 storage in `buffer` (training's parameter and
// gradient buffers): offsets[i] is where the i-th tensor of for_each_trained_tensor
// starts, or -1 for a tensor this process does not hold (its view stays empty).
void bind_f32_buffer(const Config& config, Weights& weights, const float* buffer, const std::vector<int64_t>& offsets);

// Binds every slot to the checkpoint's tensors, validating presence, shape and
// dtype (float8 weights need their "<name>_scale_inv" block scales).
Weights load_weights(const Config& config, const Checkpoint& checkpoint);
// One slot of load_weights: 1-D tensors not stored as aligned float32 are
// converted into a new entry of `converted`.
void bind_tensor(const Config& config, const Checkpoint& checkpoint, const TensorSlot& slot,
                 std::vector<std::vector<float>>& converted);

}  // namespace dsv2
