// src/dist under MPI: collectives, the rank layout and the token dispatcher.
// Run by ctest as one process and under mpirun at 2 and 4 ranks; every test is
// a collective (each rank runs it) and checks what its own rank received.
// Expected values are computed here from the inputs' definitions; the token
// dispatcher's are exact (small integers and power-of-two gates), so any
// summation order gives the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/parallel_layout.h"
#include "dist/runtime.h"
#include "dist/token_dispatcher.h"

namespace dsv2::dist {
namespace {

const Communicator& all() { return world(); }

// A value whose float sum over ranks depends on the order of addition.
float part(int rank, int64_t i) { return (rank % 2 ? 1e-4f : 1e4f) * (1.0f + 0.37f * static_cast<float>(i % 7)) + 0.1f * rank; }

float rank_order_sum(int ranks, int64_t i) {
  float s = part(0, i);
  for (int r = 1; r < ranks; ++r) s += part(r, i);
  return s;
}

TEST(Communicator, SumsAreAddedInRankOrder) {
  for (int64_t n : {int64_t{5}, int64_t{300000}}) {  // small: all-gather; large: reduce-scatter + all-gather
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = part(all().rank(), i);
    all().sum(v.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(v[i], rank_order_sum(all().size(), i)) << "n " << n << " i " << i;
  }
  std::vector<double> d{1.0 + all().rank(), 0.5};
  all().sum(d.data(), 2);
  EXPECT_EQ(d[0], all().size() * (all().size() + 1) / 2.0);
  EXPECT_EQ(d[1], 0.5 * all().size());
  EXPECT_EQ(all().sum(int64_t{all().rank()}), int64_t{all().size()} * (all().size() - 1) / 2);
  EXPECT_EQ(all().max(static_cast<double>(all().rank())), all().size() - 1.0);
}

TEST(Communicator, ReduceScatterThenAllGatherSegments) {
  // Uneven segments, and a buffer long enough for several rounds of the chunked exchange.
  for (int64_t n : {int64_t{1000}, int64_t{2500000}}) {
    const int ranks = all().size(), me = all().rank();
    std::vector<int64_t> bounds(ranks + 1);
    for (int r = 0; r <= ranks; ++r) bounds[r] = n * r * r / (ranks * ranks);
    std::vector<float> data(n);
    for (int64_t i = 0; i < n; ++i) data[i] = part(me, i);
    all().reduce_scatter_sum(data.data(), bounds);
    for (int64_t i = 0; i < n; ++i) {
      const bool mine = i >= bounds[me] && i < bounds[me + 1];
      ASSERT_EQ(data[i], mine ? rank_order_sum(ranks, i) : part(me, i)) << "n " << n << " i " << i;
    }
    for (int64_t i = bounds[me]; i < bounds[me + 1]; ++i) data[i] = static_cast<float>(me * 1000003 + i % 1000);
    all().all_gather_segments(data.data(), bounds);
    for (int r = 0; r < ranks; ++r)
      for (int64_t i = bounds[r]; i < bounds[r + 1]; ++i)
        ASSERT_EQ(data[i], static_cast<float>(r * 1000003 + i % 1000)) << "segment of rank " << r;
  }
}

TEST(Communicator, AllToAllRowsArriveFromEachRankInOrder) {
  const int ranks = all().size(), me = all().rank();
  const int64_t width = 3;
  auto rows = [](int from, int to) { return int64_t{(from + 1) * (to + 2) % 5}; };  // some zero
  std::vector<int64_t> send_rows(ranks), recv_rows(ranks);
  for (int r = 0; r < ranks; ++r) send_rows[r] = rows(me, r), recv_rows[r] = rows(r, me);
  EXPECT_EQ(all().exchange_counts(send_rows), recv_rows);
  std::vector<float> send, recv(std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0}) * width);
  for (int r = 0; r < ranks; ++r)
    for (int64_t j = 0; j < send_rows[r]; ++j)
      for (int64_t x = 0; x < width; ++x) send.push_back(static_cast<float>(me * 100 + r * 10 + j + 0.25 * x));
  Request request = all().start_all_to_all(send.data(), send_rows, recv.data(), recv_rows, width * sizeof(float));
  request.wait();
  size_t at = 0;
  for (int r = 0; r < ranks; ++r)
    for (int64_t j = 0; j < recv_rows[r]; ++j)
      for (int64_t x = 0; x < width; ++x) ASSERT_EQ(recv[at++], static_cast<float>(r * 100 + me * 10 + j + 0.25 * x));
}

TEST(Communicator, GatherBroadcastAndAllGather) {
  const int ranks = all().size(), me = all().rank();
  const std::string mine(static_cast<size_t>(me) * 3 + 1, static_cast<char>('a' + me));
  const auto everyone = all().all_gather(mine);
  ASSERT_EQ(static_cast<int>(everyone.size()), ranks);
  for (int r = 0; r < ranks; ++r) EXPECT_EQ(everyone[r], std::string(r * 3 + 1, static_cast<char>('a' + r)));
  const auto at_root = all().gather(mine.data(), mine.size(), 0);
  if (me == 0) {
    ASSERT_EQ(static_cast<int>(at_root.size()), ranks);
    for (int r = 0; r < ranks; ++r) EXPECT_EQ(at_root[r], everyone[r]);
  } else {
    EXPECT_TRUE(at_root.empty());
  }
  std::string text = me == ranks - 1 ? "from the last rank" : "";
  all().broadcast(text, ranks - 1);
  EXPECT_EQ(text, "from the last rank");
}

TEST(Runtime, AnErrorOnOneRankReachesEveryRank) {
  const int ranks = all().size();
  try {
    run_on_all_ranks(all(), [&] {
      if (all().rank() == ranks - 1) throw Error("cannot read data.txt");
    });
    FAIL() << "no JobError";
  } catch (const JobError& e) {
    EXPECT_EQ(std::string(e.what()), ranks > 1 ? "rank " + std::to_string(ranks - 1) + ": cannot read data.txt" : "cannot read data.txt");
    EXPECT_EQ(e.exit_code, 1);
  }
  try {
    run_on_all_ranks(all(), [] { throw std::invalid_argument("bad flag"); },
                     [](const std::exception& e) { return dynamic_cast<const std::invalid_argument*>(&e) != nullptr; });
    FAIL() << "no JobError";
  } catch (const JobError& e) {
    EXPECT_EQ(e.exit_code, 2);
    EXPECT_EQ(std::string(e.what()), "bad flag") << "every rank failed alike: no rank named";
  }
  EXPECT_NO_THROW(run_on_all_ranks(all(), [] {}));
}

TEST(ParallelLayout, GroupsOfConsecutiveRanksSplitTheExperts) {
  const int ranks = all().size(), me = all().rank();
  EXPECT_NE(ParallelLayout::check(ranks, ranks + 1, 8), "");
  EXPECT_NE(ParallelLayout::check(4, 3, 6), "");   // does not divide the ranks
  EXPECT_NE(ParallelLayout::check(4, 4, 6), "");   // does not divide the experts
  EXPECT_EQ(ParallelLayout::check(4, 2, 6), "");
  const int ep = ranks % 2 == 0 ? 2 : 1;
  const ParallelLayout layout = ParallelLayout::make(all(), ep, 8);
  EXPECT_EQ(layout.expert_parallel(), ep);
  EXPECT_EQ(layout.data_parallel(), ranks / ep);
  const auto group = layout.experts.all_gather_value<int>(me);
  for (int i = 0; i < ep; ++i) EXPECT_EQ(group[i], me / ep * ep + i);
  const auto replicas = layout.replicas.all_gather_value<int>(me);
  for (int i = 0; i < ranks / ep; ++i) EXPECT_EQ(replicas[i], i * ep + me % ep);
  EXPECT_EQ(layout.placement.first(), (me % ep) * (8 / ep));
  EXPECT_EQ(layout.placement.end(), (me % ep + 1) * (8 / ep));
}

// A stand-in for the routed experts: expert e multiplies its row by (e + 1).
// Everything is a small integer times a power of two, so sums are exact.
struct Routing {
  int64_t tokens, k, d;
  std::vector<float> u, gates, dout;
  std::vector<int32_t> experts;
};

Routing make_routing(int rank, int64_t experts_total) {
  Routing r{5 + rank, 3, 4, {}, {}, {}, {}};
  for (int64_t t = 0; t < r.tokens; ++t) {
    for (int64_t x = 0; x < r.d; ++x) {
      r.u.push_back(static_cast<float>((t * 7 + x * 3 + rank) % 11) - 5.0f);
      r.dout.push_back(static_cast<float>((t * 5 + x + 2 * rank) % 9) - 4.0f);
    }
    for (int64_t j = 0; j < r.k; ++j) {
      const int64_t e = (t * 3 + j * 5 + rank) % (experts_total + 1);  // experts_total means dropped
      r.experts.push_back(e == experts_total ? -1 : static_cast<int32_t>(e));
      r.gates.push_back(std::ldexp(1.0f, -static_cast<int>(j)));
    }
  }
  return r;
}

void check_dispatcher(TokenDispatcher& dispatcher, int rank) {
  const int64_t E = dispatcher.placement().experts;
  const Routing r = make_routing(rank, E);
  DispatchPlan plan;
  std::vector<float> out(r.tokens * r.d, 1.0f);  // combine adds to what is there
  dispatcher.start_dispatch(r.u.data(), r.tokens, r.d, r.experts.data(), r.gates.data(), r.k, plan);
  const ExpertRows& rows = dispatcher.finish_dispatch(plan);
  std::vector<float> rows_out(rows.rows * r.d, 0.0f), d_rows(rows.rows * r.d, 0.0f), d_gate_rows(rows.rows * r.k, 0.0f);
  const float* dout_rows = nullptr;
  for (int64_t i = 0; i < rows.rows; ++i)
    for (int64_t j = 0; j < rows.k; ++j)
      if (const int32_t e = rows.expert(i, j); e >= 0) {
        EXPECT_TRUE(dispatcher.placement().owns(e)) << "expert " << e << " is not held here";
        for (int64_t x = 0; x < r.d; ++x) rows_out[i * r.d + x] += rows.gate(i, j) * (e + 1) * rows.row(i)[x];
      }
  dispatcher.combine(plan, rows_out.data(), out.data());
  for (int64_t t = 0; t < r.tokens; ++t)
    for (int64_t x = 0; x < r.d; ++x) {
      float want = 1.0f;
      for (int64_t j = 0; j < r.k; ++j)
        if (const int32_t e = r.experts[t * r.k + j]; e >= 0) want += r.gates[t * r.k + j] * (e + 1) * r.u[t * r.d + x];
      ASSERT_EQ(out[t * r.d + x], want) << "token " << t;
    }
  // Backward: each slot's "expert" returns (e + 1)·dout as input gradient and
  // (e + 1)·Σ dout as gate gradient.
  dispatcher.start_dispatch_gradient(plan, r.dout.data());
  dout_rows = dispatcher.finish_dispatch_gradient(plan);
  for (int64_t i = 0; i < rows.rows; ++i)
    for (int64_t j = 0; j < rows.k; ++j)
      if (const int32_t e = rows.expert(i, j); e >= 0) {
        float sum = 0.0f;
        for (int64_t x = 0; x < r.d; ++x) d_rows[i * r.d + x] += (e + 1) * dout_rows[i * r.d + x], sum += dout_rows[i * r.d + x];
        d_gate_rows[i * r.k + j] = (e + 1) * sum;
      }
  std::vector<float> du(r.tokens * r.d, 0.5f), d_gates(r.tokens * r.k, 99.0f);
  dispatcher.combine_gradient(plan, d_rows.data(), d_gate_rows.data(), du.data(), d_gates.data());
  for (int64_t t = 0; t < r.tokens; ++t) {
    float sum = 0.0f;
    for (int64_t x = 0; x < r.d; ++x) sum += r.dout[t * r.d + x];
    for (int64_t x = 0; x < r.d; ++x) {
      float want = 0.5f;
      for (int64_t j = 0; j < r.k; ++j)
        if (const int32_t e = r.experts[t * r.k + j]; e >= 0) want += (e + 1) * r.dout[t * r.d + x];
      ASSERT_EQ(du[t * r.d + x], want) << "token " << t;
    }
    for (int64_t j = 0; j < r.k; ++j) {
      const int32_t e = r.experts[t * r.k + j];
      EXPECT_EQ(d_gates[t * r.k + j], e >= 0 ? (e + 1) * sum : 0.0f) << "token " << t << " slot " << j;
    }
  }
}

TEST(TokenDispatcher, LocalRunsEveryExpertOnTheTokensThemselves) {
  auto local = make_local_dispatcher(6);
  check_dispatcher(*local, all().rank());
}

TEST(TokenDispatcher, AllToAllDeliversTokensToTheirExpertsAndBack) {
  auto dispatcher = make_all_to_all_dispatcher(all(), 2 * all().size());
  check_dispatcher(*dispatcher, all().rank());
}

}  // namespace
}  // namespace dsv2::dist

// Every rank runs the tests; rank 0 alone prints, and the job fails if any rank failed.
int main(int argc, char** argv) {
  dsv2::dist::Runtime mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const auto& world = dsv2::dist::world();
  if (!world.is_root()) delete ::testing::UnitTest::GetInstance()->listeners().Release(
      ::testing::UnitTest::GetInstance()->listeners().default_result_printer());
  const int failed = RUN_ALL_TESTS() != 0;
  const int64_t failures = world.sum(int64_t{failed});
  if (world.is_root() && failures > 0) std::fprintf(stderr, "%lld rank(s) failed\n", static_cast<long long>(failures));
  return failures > 0 ? 1 : 0;
}
