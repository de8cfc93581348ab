#include "dist/communicator.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"

namespace dsv2::dist {

struct Communicator::Handle {
  MPI_Comm comm = MPI_COMM_NULL;
  bool owned = false;  // made by split: freed here (MPI_COMM_WORLD is not)
  // Grow-only buffers for the collectives a decoding step makes (no allocation per token).
  std::vector<float> parts;
  std::vector<int> counts, displs;
  ~Handle() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned && !finalized) MPI_Comm_free(&comm);
  }
};

struct Request::State {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Datatype row_type = MPI_DATATYPE_NULL;
  std::vector<int> send_counts, send_displs, recv_counts, recv_displs;  // must outlive the request
};

namespace {

// Elements per round of the chunked segment collectives: bounds the scratch
// memory (2 × ranks × this many floats) and keeps MPI's int counts small.
constexpr int64_t kSegmentPiece = int64_t{1} << 20;

int to_int(int64_t value, const char* what) {
  require(value >= 0 && value <= INT_MAX, std::string("MPI message too large: ") + what);
  return static_cast<int>(value);
}

// out[i] = Σ_r parts[r·stride + i], r in rank order, for i in [0, n).
template <class T>
void sum_in_rank_order(const T* parts, int ranks, int64_t stride, int64_t n, T* out) {
  parallel_for(n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T s = parts[i];
      for (int r = 1; r < ranks; ++r) s += parts[r * stride + i];
      out[i] = s;
    }
  });
}

// The segment collectives move the segments in rounds of at most
// kSegmentPiece values each: round `at` moves values [at, at + piece) of
// every segment, rank r's at offset r · piece of the round's buffer.
struct Rounds {
  int64_t longest = 0, piece = 0;
  std::vector<int> displs;
  Rounds(const std::vector<int64_t>& bounds, int ranks) : displs(ranks) {
    for (int r = 0; r < ranks; ++r) longest = std::max(longest, bounds[r + 1] - bounds[r]);
    piece = std::min(longest, kSegmentPiece);
    for (int r = 0; r < ranks; ++r) displs[r] = static_cast<int>(r * piece);
  }
  // Rank r's values of the round starting at `at`: [begin, end) of the whole buffer.
  std::pair<int64_t, int64_t> of(const std::vector<int64_t>& bounds, int r, int64_t at) const {
    const int64_t begin = std::min(bounds[r] + at, bounds[r + 1]);
    return {begin, std::min(begin + piece, bounds[r + 1])};
  }
};

}  // namespace

Traffic& traffic() {
  static Traffic counters;
  return counters;
}

Communicator::Communicator() = default;
Communicator Communicator::single() { return Communicator(); }

Communicator Communicator::mpi_world() {
  Communicator c;
  c.handle_ = std::make_shared<Handle>();
  c.handle_->comm = MPI_COMM_WORLD;
  MPI_Comm_rank(MPI_COMM_WORLD, &c.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &c.size_);
  return c;
}

Communicator Communicator::split(int color, int key) const {
  if (!handle_) return Communicator();
  auto handle = std::make_shared<Handle>();
  MPI_Comm_split(handle_->comm, color, key, &handle->comm);
  handle->owned = true;
  Communicator c;
  MPI_Comm_rank(handle->comm, &c.rank_);
  MPI_Comm_size(handle->comm, &c.size_);
  c.handle_ = std::move(handle);
  return c;
}

void Communicator::barrier() const {
  if (handle_) MPI_Barrier(handle_->comm);
}

void Communicator::broadcast(void* data, size_t bytes, int root) const {
  if (!handle_ || size_ == 1) return;
  auto* p = static_cast<char*>(data);
  for (size_t done = 0; done < bytes;) {
    const size_t n = std::min<size_t>(bytes - done, size_t{1} << 30);
    MPI_Bcast(p + done, static_cast<int>(n), MPI_BYTE, root, handle_->comm);
    done += n;
  }
  if (rank_ == root) traffic().collective += static_cast<int64_t>(bytes) * (size_ - 1);
}

void Communicator::broadcast(std::string& text, int root) const {
  if (!handle_ || size_ == 1) return;
  uint64_t n = text.size();
  broadcast(&n, sizeof n, root);
  text.resize(n);
  broadcast(text.data(), n, root);
}

void Communicator::all_gather_bytes(const void* mine, void* all, size_t bytes) const {
  if (!handle_) {
    if (bytes > 0) std::memcpy(all, mine, bytes);
    return;
  }
  MPI_Allgather(mine, to_int(static_cast<int64_t>(bytes), "all_gather"), MPI_BYTE, all, static_cast<int>(bytes), MPI_BYTE,
                handle_->comm);
  traffic().collective += static_cast<int64_t>(bytes) * (size_ - 1);
}

std::vector<std::string> Communicator::all_gather(const std::string& mine) const {
  if (!handle_) return {mine};
  const std::vector<int64_t> lengths = all_gather_value<int64_t>(static_cast<int64_t>(mine.size()));
  std::vector<int> counts(size_), displs(size_);
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    counts[r] = to_int(lengths[r], "all_gather");
    displs[r] = to_int(total, "all_gather");
    total += lengths[r];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Allgatherv(mine.data(), counts[rank_], MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, handle_->comm);
  traffic().collective += static_cast<int64_t>(mine.size()) * (size_ - 1);
  std::vector<std::string> out(size_);
  for (int r = 0; r < size_; ++r) out[r] = all.substr(displs[r], counts[r]);
  return out;
}

void Communicator::sum(double* values, int64_t n) const {
  if (!handle_ || size_ == 1 || n == 0) return;
  std::vector<double> parts(static_cast<size_t>(n) * size_);
  all_gather_bytes(values, parts.data(), static_cast<size_t>(n) * sizeof(double));
  sum_in_rank_order(parts.data(), size_, n, n, values);
}

void Communicator::sum(int64_t* values, int64_t n) const {
  if (!handle_ || size_ == 1 || n == 0) return;
  // Integer sums are exact in any order.
  MPI_Allreduce(MPI_IN_PLACE, values, to_int(n, "sum"), MPI_INT64_T, MPI_SUM, handle_->comm);
  traffic().collective += n * 8 * (size_ - 1);
}

void Communicator::sum(float* values, int64_t n) const {
  if (!handle_ || size_ == 1 || n == 0) return;
  if (n < kSegmentPiece / 4) {  // small: every rank adds all parts itself
    std::vector<float>& parts = handle_->parts;
    if (parts.size() < static_cast<size_t>(n) * size_) parts.resize(static_cast<size_t>(n) * size_);
    all_gather_bytes(values, parts.data(), static_cast<size_t>(n) * sizeof(float));
    sum_in_rank_order(parts.data(), size_, n, n, values);
    return;
  }
  // Large: each rank sums one segment, then the segments are shared (a
  // bandwidth-optimal all-reduce with the same rank-order sums).
  std::vector<int64_t> bounds(size_ + 1);
  for (int r = 0; r <= size_; ++r) bounds[r] = n * r / size_;
  reduce_scatter_sum(values, bounds);
  all_gather_segments(values, bounds);
}

double Communicator::sum(double value) const {
  sum(&value, 1);
  return value;
}

int64_t Communicator::sum(int64_t value) const {
  sum(&value, 1);
  return value;
}

double Communicator::max(double value) const {
  if (!handle_ || size_ == 1) return value;
  MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MAX, handle_->comm);
  traffic().collective += 8 * (size_ - 1);
  return value;
}

std::vector<int64_t> Communicator::exchange_counts(const std::vector<int64_t>& send_counts) const {
  require(static_cast<int>(send_counts.size()) == size_, "exchange_counts: one count per rank");
  if (!handle_) return send_counts;
  std::vector<int64_t> recv(size_);
  MPI_Alltoall(send_counts.data(), 1, MPI_INT64_T, recv.data(), 1, MPI_INT64_T, handle_->comm);
  traffic().collective += 8 * (size_ - 1);
  return recv;
}

Request Communicator::start_all_to_all(const void* send, const std::vector<int64_t>& send_rows, void* recv,
                                       const std::vector<int64_t>& recv_rows, size_t row_bytes) const {
  require(static_cast<int>(send_rows.size()) == size_ && static_cast<int>(recv_rows.size()) == size_,
          "all_to_all: one row count per rank");
  if (!handle_) {
    if (send_rows[0] > 0) std::memcpy(recv, send, static_cast<size_t>(send_rows[0]) * row_bytes);
    return Request();
  }
  auto state = std::make_unique<Request::State>();
  MPI_Type_contiguous(to_int(static_cast<int64_t>(row_bytes), "all_to_all row"), MPI_BYTE, &state->row_type);
  MPI_Type_commit(&state->row_type);
  state->send_counts.resize(size_), state->send_displs.resize(size_);
  state->recv_counts.resize(size_), state->recv_displs.resize(size_);
  int64_t send_at = 0, recv_at = 0;
  for (int r = 0; r < size_; ++r) {
    state->send_counts[r] = to_int(send_rows[r], "all_to_all");
    state->recv_counts[r] = to_int(recv_rows[r], "all_to_all");
    state->send_displs[r] = to_int(send_at, "all_to_all");
    state->recv_displs[r] = to_int(recv_at, "all_to_all");
    send_at += send_rows[r], recv_at += recv_rows[r];
    if (r != rank_) traffic().all_to_all += send_rows[r] * static_cast<int64_t>(row_bytes);
  }
  MPI_Ialltoallv(send, state->send_counts.data(), state->send_displs.data(), state->row_type, recv,
                 state->recv_counts.data(), state->recv_displs.data(), state->row_type, handle_->comm, &state->request);
  return Request(std::move(state));
}

void Communicator::reduce_scatter_sum(float* data, const std::vector<int64_t>& bounds) const {
  require(static_cast<int>(bounds.size()) == size_ + 1, "reduce_scatter: size() + 1 bounds");
  if (!handle_ || size_ == 1) return;
  const Rounds rounds(bounds, size_);
  const int64_t piece = rounds.piece;
  std::vector<float> send(static_cast<size_t>(piece) * size_), recv(static_cast<size_t>(piece) * size_);
  std::vector<int> send_counts(size_), recv_counts(size_);
  // Each round, rank r's piece of every rank's buffer goes to rank r, which adds them up.
  for (int64_t at = 0; at < rounds.longest; at += piece) {
    for (int r = 0; r < size_; ++r) {
      const auto [begin, end] = rounds.of(bounds, r, at);
      send_counts[r] = static_cast<int>(end - begin);
      std::memcpy(send.data() + r * piece, data + begin, static_cast<size_t>(end - begin) * sizeof(float));
      if (r != rank_) traffic().collective += (end - begin) * 4;
    }
    const int mine = send_counts[rank_];
    std::fill(recv_counts.begin(), recv_counts.end(), mine);
    MPI_Alltoallv(send.data(), send_counts.data(), rounds.displs.data(), MPI_FLOAT, recv.data(), recv_counts.data(),
                  rounds.displs.data(), MPI_FLOAT, handle_->comm);
    if (mine > 0) sum_in_rank_order(recv.data(), size_, piece, mine, data + bounds[rank_] + at);
  }
}

void Communicator::all_gather_segments(float* data, const std::vector<int64_t>& bounds) const {
  require(static_cast<int>(bounds.size()) == size_ + 1, "all_gather_segments: size() + 1 bounds");
  if (!handle_ || size_ == 1) return;
  const Rounds rounds(bounds, size_);
  const int64_t piece = rounds.piece;
  std::vector<float> all(static_cast<size_t>(piece) * size_);
  std::vector<int> counts(size_);
  for (int64_t at = 0; at < rounds.longest; at += piece) {
    for (int r = 0; r < size_; ++r) {
      const auto [begin, end] = rounds.of(bounds, r, at);
      counts[r] = static_cast<int>(end - begin);
    }
    const float* mine = data + rounds.of(bounds, rank_, at).first;
    MPI_Allgatherv(mine, counts[rank_], MPI_FLOAT, all.data(), counts.data(), rounds.displs.data(), MPI_FLOAT,
                   handle_->comm);
    traffic().collective += static_cast<int64_t>(counts[rank_]) * 4 * (size_ - 1);
    for (int r = 0; r < size_; ++r)
      if (r != rank_ && counts[r] > 0)
        std::memcpy(data + rounds.of(bounds, r, at).first, all.data() + r * piece, static_cast<size_t>(counts[r]) * sizeof(float));
  }
}

std::vector<std::string> Communicator::gather(const void* data, size_t bytes, int root) const {
  if (!handle_) return {std::string(static_cast<const char*>(data), bytes)};
  const std::vector<int64_t> sizes = all_gather_value<int64_t>(static_cast<int64_t>(bytes));
  std::vector<std::string> out(rank_ == root ? size_ : 0);
  for (int r = 0; r < size_ && rank_ == root; ++r) out[r].resize(static_cast<size_t>(sizes[r]));
  // Point-to-point in 1 GB pieces: any size, in rank order.
  constexpr int64_t kPiece = int64_t{1} << 30;
  for (int r = 0; r < size_; ++r) {
    if (r == root) {
      if (rank_ == root && bytes > 0) std::memcpy(out[r].data(), data, bytes);
      continue;
    }
    for (int64_t at = 0; at < sizes[r]; at += kPiece) {
      const int n = static_cast<int>(std::min(kPiece, sizes[r] - at));
      if (rank_ == r) {
        MPI_Send(static_cast<const char*>(data) + at, n, MPI_BYTE, root, 0, handle_->comm);
        traffic().collective += n;
      } else if (rank_ == root) {
        MPI_Recv(out[r].data() + at, n, MPI_BYTE, r, 0, handle_->comm, MPI_STATUS_IGNORE);
      }
    }
  }
  return out;
}

void Communicator::gather_columns(const float* mine, int64_t rows, const std::vector<int64_t>& bounds, float* all,
                                  int root) const {
  require(static_cast<int>(bounds.size()) == size_ + 1, "gather_columns: size() + 1 bounds");
  const int64_t total = bounds.back();
  if (!handle_ || size_ == 1) {
    if (rows * total > 0) std::memcpy(all, mine, static_cast<size_t>(rows * total) * sizeof(float));
    return;
  }
  // Every rank's block arrives whole ([rows, width_r], in rank order); then the
  // blocks are interleaved into rows.
  std::vector<float>& blocks = handle_->parts;
  if (blocks.size() < static_cast<size_t>(rows * total)) blocks.resize(static_cast<size_t>(rows * total));
  std::vector<int>& counts = handle_->counts;
  std::vector<int>& displs = handle_->displs;
  counts.resize(size_), displs.resize(size_);
  for (int r = 0; r < size_; ++r) {
    counts[r] = to_int(rows * (bounds[r + 1] - bounds[r]), "gather_columns");
    displs[r] = to_int(rows * bounds[r], "gather_columns");
  }
  if (root < 0) {
    MPI_Allgatherv(mine, counts[rank_], MPI_FLOAT, blocks.data(), counts.data(), displs.data(), MPI_FLOAT, handle_->comm);
    traffic().collective += static_cast<int64_t>(counts[rank_]) * 4 * (size_ - 1);
  } else {
    MPI_Gatherv(mine, counts[rank_], MPI_FLOAT, blocks.data(), counts.data(), displs.data(), MPI_FLOAT, root, handle_->comm);
    if (rank_ != root) traffic().collective += static_cast<int64_t>(counts[rank_]) * 4;
    if (rank_ != root) return;
  }
  for (int r = 0; r < size_; ++r) {
    const int64_t width = bounds[r + 1] - bounds[r];
    const float* block = blocks.data() + rows * bounds[r];
    if (width == 0) continue;
    for (int64_t t = 0; t < rows; ++t) std::memcpy(all + t * total + bounds[r], block + t * width, width * sizeof(float));
  }
}

Request::Request() = default;
Request::Request(std::unique_ptr<State> state) : state_(std::move(state)) {}
Request::Request(Request&&) noexcept = default;
Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    wait();
    state_ = std::move(other.state_);
  }
  return *this;
}
Request::~Request() { wait(); }

void Request::wait() {
  if (!state_) return;
  MPI_Wait(&state_->request, MPI_STATUS_IGNORE);
  MPI_Type_free(&state_->row_type);
  state_.reset();
}

void Request::test() {
  if (!state_) return;
  int done = 0;
  MPI_Test(&state_->request, &done, MPI_STATUS_IGNORE);
}

}  // namespace dsv2::dist
