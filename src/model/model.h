// A DeepSeek-V2/V3 transformer loaded from a Hugging Face model directory.
//   x = embed(ids)
//   per layer:  x += MLA(RMSNorm(x));  x += FFN(RMSNorm(x))   (FFN: dense MLP or DeepSeekMoE)
//   logits = lm_head(RMSNorm(x))
//
// Split over the ranks of an MPI job (model/shard.h), every rank holds its
// share of the weights and a whole copy of every latent cache. Rank 0 leads:
// its forward calls are announced to the other ranks ("followers", in
// follow()), which run the same step on their share and mirror rank 0's caches,
// so that callers on rank 0 (generate, the server's engine) use the model as
// if it were in one process.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "core/scratch.h"
#include "io/checkpoint.h"
#include "io/mapped_file.h"
#include "model/config.h"
#include "model/latent_cache.h"
#include "model/mla.h"
#include "model/rope.h"
#include "model/shard.h"
#include "model/weights.h"

namespace dsv2 {

class Model {
 public:
  // Throws Error naming the file and field at fault. With `quantize_to`, the
  // weights are re-encoded in memory at load time as `dsv2 quantize --type`
  // would store them (model/convert.h).
  explicit Model(const std::string& dir, std::optional<DType> quantize_to = std::nullopt);
  // This rank's share of the model split over `group` (every rank of the group
  // constructs it). Only the weights of the share are read into memory.
  Model(const std::string& dir, std::optional<DType> quantize_to, const dist::Communicator& group);
  // A model over weights held elsewhere, used in place (views, no copy): the
  // owner keeps them alive and may change their values between forward calls.
  // GRPO samples from the policy it trains this way (training's float32
  // buffers, train/train_weights.h), with no model directory written per step.
  Model(const Config& config, const Weights& weights);
  ~Model();  // rank 0 of a split model releases its followers
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const Config& config() const { return config_; }
  const ShardPlan& plan() const { return plan_; }
  bool is_follower() const { return plan_.rank != 0; }
  // On ranks other than 0: runs the steps rank 0 takes, until rank 0's model
  // is destroyed. Returns then.
  void follow();
  // The files the weights come from (not for a model over weights held elsewhere).
  const Checkpoint& checkpoint() const;
  const Weights& weights() const { return weights_; }

  // Runs `tokens` ids at positions cache.length()..; appends their latents to
  // the cache and advances it. Writes logits [tokens, vocab_size], or only the
  // last token's row when last_only. `hidden`, when given, receives every
  // token's final hidden state after model.norm (what the LM head reads; the
  // MTP module drafts from them, model/mtp.h), [tokens, hidden_size], also
  // when last_only.
  void forward(const int32_t* ids, int64_t tokens, LatentCache& cache, AttentionPath path, float* logits,
               bool last_only = false, float* hidden = nullptr);

  // One step for several sequences at once (continuous batching): each chunk
  // is some tokens of one sequence with its own cache. Weights are read once
  // for all of them. Writes one logits row per chunk, for its last token, and,
  // when `hidden` is given, every row's final hidden state after model.norm
  // ([total tokens, hidden_size], chunk after chunk: what the MTP module reads).
  struct Chunk {
    const int32_t* ids;
    int64_t tokens;
    LatentCache* cache;
  };
  void forward_batch(const std::vector<Chunk>& chunks, AttentionPath path, float* logits, float* hidden = nullptr);
  // Both skip the last layer's FFN for the rows whose logits nobody reads
  // (every row but each sequence's last, unless `hidden` or all logits are
  // asked for): the latents of those rows are in the cache by then, and
  // nothing else reads their output. llama.cpp prunes its graph the same way.

  // Positions [begin, end) of every layer of `cache` get random latents from
  // `seed` (benchmarks' stand-in for a long prefill); the cache's length
  // becomes `end`. On every rank of a split model alike.
  void fill_random_latents(LatentCache& cache, int64_t begin, int64_t end, uint64_t seed);

  // Repacks every matrix a prompt's GEMMs read into their panels (ops/repack.h,
  // `--repack`): attention, router, dense and expert projections of this
  // rank's share; not the embedding, the LM head or a reward head (a prompt
  // reads one of their rows at a time). A prompt's GEMM products stay bit for
  // bit the same. bf16 panels replace the rows (WeightMatrix::
  // products_read_panels: one-token products read them too, in their own
  // float32 order, matvec_bf16_panels), and the pages of rows used in place
  // from the checkpoint's map are released (kv_b_proj's stay: the absorbed
  // attention reads its rows), so repacking bf16 weights costs no memory.
  // q8/q4/float8 rows stay beside their panels: as much memory again for
  // those (more, widened to bf16). Returns the panel bytes added. Only for a
  // model loaded from a directory (a view of weights held elsewhere may change
  // under it).
  int64_t repack_for_prompts();
  // Panel bytes repack_for_prompts added on this rank (0 if it did not run),
  // and the bytes of rows whose pages it released.
  int64_t repacked_bytes() const;
  int64_t released_bytes() const { return released_bytes_; }

  // MoE layer calls on this rank, and those in which no token chose an expert
  // it holds (it then skipped the routed experts' work).
  struct ExpertWork {
    int64_t layer_calls = 0, skipped = 0;
  };
  ExpertWork expert_work() const { return expert_work_; }

  // Every rank's resource use so far, gathered at rank 0 (a step all ranks
  // take; followers get an empty list). One entry in one process.
  struct RankReport {
    int64_t peak_rss_bytes = 0, bytes_sent = 0;  // bytes_sent: to other ranks (dist::traffic)
    ExpertWork experts;
  };
  std::vector<RankReport> rank_reports();

 private:
  struct Step;  // a forward call as rank 0 announces it (model_group.cpp)

  Config config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  Weights weights_;
  ShardPlan plan_;
  std::vector<std::vector<std::byte>> quantized_;  // weights re-encoded at load time
  std::vector<AnonymousPages> repacked_;           // panels of repack_for_prompts
  int64_t released_bytes_ = 0;
  Rope rope_;
  Scratch activations_, attention_scratch_, ffn_scratch_;
  std::vector<int32_t> batch_ids_;
  std::vector<SequenceSpan> spans_;

  ExpertWork expert_work_;
  std::unordered_map<uint64_t, std::unique_ptr<LatentCache>> mirrors_;  // followers: rank 0's caches

  // Rejects a batch that could not run (ids outside the vocabulary, a cache
  // too small) before any rank starts it.
  void check_batch() const;
  // Runs the layers over rows of batch_ids_ grouped in spans_; leaves the final
  // hidden states in the residual slot and advances every cache. With
  // last_rows_only the last layer's FFN runs for each span's last row alone,
  // and those rows come first in the slot, span after span.
  float* run_layers(AttentionPath path, bool last_rows_only);
  // forward and forward_batch with the choice of rows for the last layer's FFN
  // explicit: the followers of a split model take rank 0's.
  void forward_tokens(const int32_t* ids, int64_t tokens, LatentCache& cache, AttentionPath path, float* logits,
                      bool last_only, float* hidden, bool last_row_only);
  void forward_chunks(const std::vector<Chunk>& chunks, AttentionPath path, float* logits, float* hidden,
                      bool last_rows_only);
  // logits = lm_head(rows): on rank 0 only when the LM head is split.
  void lm_head(const float* rows, int64_t count, float* logits);
  // Rank 0 of a split model: tells the followers which step comes (the batch
  // in batch_ids_ and spans_).
  // `rows`: kLastOnly (logits of the last row only) | kLastRowsOnly (run_layers' choice).
  enum RowFlags : int64_t { kLastOnly = 1, kLastRowsOnly = 2 };
  void announce(int op, AttentionPath path, int64_t rows, int64_t fill_begin = 0, uint64_t fill_seed = 0);
  void fill_latents(LatentCache& cache, int64_t begin, int64_t end, uint64_t seed);
};

}  // namespace dsv2
