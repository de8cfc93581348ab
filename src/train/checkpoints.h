// Training checkpoints: OUT/checkpoint-<step>/ holds the model as a Hugging
// Face directory (config.json + model.safetensors, float32 master weights,
// routed experts gathered from every rank), one optimizer-rank<R>.safetensors
// per rank (its ZeRO partition of the AdamW moments) and state.json (step,
// tokens, data sampler, the rank layout). Everything is written under
// checkpoint-<step>.tmp and renamed; OUT/latest, replaced last, names the
// newest complete checkpoint, so a crash (of any rank) at any moment leaves
// the previous one intact. Every function here is a collective over the job.
#pragma once

#include <cstdint>
#include <string>

#include "dist/parallel_layout.h"
#include "train/optimizer.h"
#include "train/train_weights.h"

namespace dsv2 {

struct TrainingState {
  int64_t step = 0;    // the next step to run
  int64_t tokens = 0;  // seen so far
  std::string sampler;
};

// `options_json`: the run's options, recorded in state.json; `tokenizer_dir`:
// where the tokenizer files to copy in are (empty: none).
void save_checkpoint(const std::string& out, const TrainWeights& weights, const AdamW& adam, const TrainingState& state,
                     const std::string& options_json, const dist::ParallelLayout& layout,
                     const std::string& tokenizer_dir = "");

// Restores weights, moments and state from OUT/latest; the checkpoint must come
// from a job with the same number of ranks and expert parallelism.
TrainingState load_checkpoint(const std::string& out, TrainWeights& weights, AdamW& adam,
                              const dist::ParallelLayout& layout);

// Writes the whole model into `dir` (rank 0 writes; the first expert-parallel
// group sends it the routed experts it does not hold).
void save_whole_model(const TrainWeights& weights, const dist::ParallelLayout& layout, const std::string& dir, bool bf16);

}  // namespace dsv2
