// A training batch: sequences of input tokens and the targets they predict.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv2 {

struct Batch {
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> inputs, targets;  // [batch, seq_len] each; target -1 = ignored
  std::vector<uint8_t> droppable;        // per sequence: may its tokens be dropped (token dropping)
  // [batch, seq_len] RoPE position of each token, or empty for 0..seq_len-1 in
  // every sequence. Packed SFT sequences restart at 0 with each conversation,
  // which also confines attention to it (mla_train.h).
  std::vector<int32_t> positions;
  // This process's place in the step's whole batch (data parallelism): its
  // first sequence, and the sequences and counted targets of the whole batch
  // (0: this batch is the whole batch).
  int64_t first_sequence = 0, global_sequences = 0, global_targets = 0;
};

// Rank `rank` of `ranks`'s share of a batch: sequences [S·rank/ranks, S·(rank+1)/ranks).
Batch share_of(const Batch& whole, int rank, int ranks);

}  // namespace dsv2
