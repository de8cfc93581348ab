// A group of dsv2 processes ("ranks") and the collectives dsv2 needs. This
// layer (src/dist) is the only code that talks to MPI; model, training and
// serving code call these functions and never MPI itself.
//
// Without MPI (a plain `dsv2` run, or Communicator::single()) the group is
// this process alone and every collective is a local copy, so callers keep one
// code path for one process and for many.
//
// Sums are computed in rank order by this layer rather than by MPI's reduction
// algorithms: every rank gets the same bits, a rerun with the same number of
// ranks gives the same bits, and the result does not depend on the transport
// (shared memory or TCP) or on the algorithm Open MPI picks for a message size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace dsv2::dist {

// Bytes this process has sent to other ranks, by kind (for the metrics log).
struct Traffic {
  int64_t all_to_all = 0;   // token rows of the expert-parallel exchange
  int64_t collective = 0;   // reduce-scatter, all-gather, sums, broadcasts
};
Traffic& traffic();  // process-wide counters; callers take differences

class Request;

class Communicator {
 public:
  Communicator();  // = single()
  static Communicator single();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }

  // Ranks with the same color form a new group, ordered by key (MPI_Comm_split).
  Communicator split(int color, int key) const;

  void barrier() const;
  void broadcast(void* data, size_t bytes, int root) const;
  void broadcast(std::string& text, int root) const;

  // Every rank's string, in rank order (small things: options, error messages).
  std::vector<std::string> all_gather(const std::string& mine) const;
  template <class T>
  std::vector<T> all_gather_value(const T& mine) const {
    static_assert(std::is_trivially_copyable_v<T>);
    std::vector<T> all(size_);
    all_gather_bytes(&mine, all.data(), sizeof(T));
    return all;
  }

  // values[i] ← Σ over ranks of values[i], added in rank order (see above).
  void sum(double* values, int64_t n) const;
  void sum(int64_t* values, int64_t n) const;
  void sum(float* values, int64_t n) const;
  double sum(double value) const;
  int64_t sum(int64_t value) const;
  double max(double value) const;

  // One count per rank out, one count per rank in (MPI_Alltoall of int64).
  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) const;

  // Sends send_rows[r] rows of row_bytes each to rank r (consecutive blocks of
  // `send`, in rank order) and receives recv_rows[r] rows from rank r into
  // consecutive blocks of `recv`. Non-blocking: the buffers must stay untouched
  // until the returned request completes.
  Request start_all_to_all(const void* send, const std::vector<int64_t>& send_rows, void* recv,
                           const std::vector<int64_t>& recv_rows, size_t row_bytes) const;

  // ZeRO's two halves over a buffer split into segments: rank r owns
  // data[bounds[r], bounds[r + 1]) (bounds has size() + 1 entries).
  // reduce_scatter_sum: each rank's own segment ← Σ over ranks of that segment
  // (rank order); the rest of `data` is left as it was.
  void reduce_scatter_sum(float* data, const std::vector<int64_t>& bounds) const;
  // all_gather_segments: every rank's segment is copied into every rank's buffer.
  void all_gather_segments(float* data, const std::vector<int64_t>& bounds) const;

  // Rank `root` receives every rank's bytes (any size each), in rank order.
  std::vector<std::string> gather(const void* data, size_t bytes, int root) const;

  // A [rows, bounds.back()] matrix split by columns: rank r holds columns
  // [bounds[r], bounds[r + 1]) as `mine` ([rows, its width]). `all` receives
  // the whole matrix on every rank, or on rank `root` only (root >= 0).
  // (Outputs of a weight split by rows over the ranks: attention heads, the
  // LM head's vocabulary.)
  void gather_columns(const float* mine, int64_t rows, const std::vector<int64_t>& bounds, float* all, int root = -1) const;

  struct Handle;  // MPI_Comm, defined in communicator.cpp

 private:
  void all_gather_bytes(const void* mine, void* all, size_t bytes) const;
  static Communicator mpi_world();  // MPI_COMM_WORLD, for Runtime once MPI has started

  std::shared_ptr<Handle> handle_;  // null: this process alone
  int rank_ = 0, size_ = 1;
  friend class Runtime;
};

// A non-blocking collective in flight. wait() completes it (also on
// destruction); test() lets MPI progress it while the caller computes.
class Request {
 public:
  Request();
  Request(Request&&) noexcept;
  Request& operator=(Request&&) noexcept;
  ~Request();
  void wait();
  void test();

  struct State;

 private:
  explicit Request(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
  friend class Communicator;
};

}  // namespace dsv2::dist
