// The training loop: batches -> forward/backward -> clip -> AdamW, with the
// learning-rate schedule, batch-size ramp, aux-loss-free bias updates,
// validation, a JSONL metrics log, a progress line on a TTY, and checkpoints
// that resume bit-identically (same thread count) after a crash at any moment.
//
// Under MPI every rank runs this loop on its share of each step's batch
// (expert parallelism × ZeRO-1, see dist/parallel_layout.h and train/zero.h);
// rank 0 alone writes the log, prints and writes the model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "dist/parallel_layout.h"
#include "train/data.h"
#include "train/moe_train.h"
#include "train/mtp_train.h"
#include "train/optimizer.h"
#include "train/training_model.h"

namespace dsv2 {

// A step's objective other than next-token cross-entropy (the reward model's,
// train/reward_data.h): the forward and backward of one batch.
class StepObjective {
 public:
  virtual ~StepObjective() = default;
  virtual StepResult step(TrainingModel& model, TrainWeights& weights, const Batch& batch) = 0;
  // The last step's own metrics, added to its metrics.jsonl line.
  virtual void add_metrics(nlohmann::ordered_json& line) const = 0;
};

struct TrainerOptions {
  std::string out_dir;
  std::string tokenizer_dir;  // copied next to the model so the output is a complete model directory
  int64_t steps = 1000;
  int64_t seq_len = 256;
  int64_t batch_tokens = 8192;
  LrSchedule lr;
  BatchRamp ramp;
  AdamWOptions adam;
  double clip = 1.0;
  float init_std = 0.006f;
  std::string init_from;  // a model directory whose weights the run starts from (continued training), instead of init_std
  uint64_t seed = 1;
  MoeTrainingOptions moe;
  MtpLambda mtp_lambda;  // the MTP loss's weight (used when the config has num_nextn_predict_layers > 0)
  bool freeze_model = false;  // train only the MTP modules (the model as loaded stays fixed)
  double never_drop_share = 0.1;
  double passkey_share = 0.0;            // share of sequences that are passkey episodes (needs `passkey`)
  std::optional<PasskeyFormat> passkey;
  int64_t eval_every = 100, eval_batches = 8;
  int64_t checkpoint_every = 100;
  bool resume = false;
  bool save_bf16 = false;  // also write the root model.safetensors in bfloat16 at the end
  // Where the steps' batches come from instead of random windows of data.train
  // (SFT's packed conversations); null: a BatchSampler over data.train.
  BatchSource* batches = nullptr;
  // Held-out batches evaluated every eval_every steps instead of windows of
  // data.validation (SFT's held-out conversations, packed as for training).
  const std::vector<Batch>* validation_batches = nullptr;
  StepObjective* objective = nullptr;  // null: next-token cross-entropy (TrainingModel::run)
};

// Trains `config` on `data` as one rank of `layout` (every rank passes the
// same config, data and options); returns the final validation loss (nats/token).
double train(const Config& config, const TokenData& data, const TrainerOptions& options, const dist::ParallelLayout& layout);
// The same in this process alone.
double train(const Config& config, const TokenData& data, const TrainerOptions& options);

struct EvalResult {
  double loss = 0.0;  // nats per token
  int64_t tokens = 0, bytes = 0;
  double perplexity() const;
  double bits_per_byte() const;  // total nats / ln 2 / bytes of text
};

}  // namespace dsv2
