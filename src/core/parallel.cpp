#include "core/parallel.h"

#include <omp.h>

#include <algorithm>

namespace dsv2 {

void parallel_for(int64_t count, int64_t grain, RangeBody body) {
  if (count <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (count + grain - 1) / grain;
  const int threads = static_cast<int>(std::min<int64_t>(max_chunks, omp_get_max_threads()));
  if (threads <= 1 || omp_in_parallel()) {
    body(0, count);
    return;
  }
  // Static split: equal contiguous ranges, one per thread, so results do not
  // depend on scheduling (sums inside a range are always in the same order).
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num();
    const int64_t begin = count * t / threads, end = count * (t + 1) / threads;
    if (begin < end) body(begin, end);
  }
}

void parallel_for_each(int64_t count, RangeBody body) {
  if (count <= 0) return;
  if (count == 1 || omp_get_max_threads() <= 1 || omp_in_parallel()) {
    body(0, count);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(std::min<int64_t>(count, omp_get_max_threads())))
  for (int64_t i = 0; i < count; ++i) body(i, i + 1);
}

void set_num_threads(int threads) { omp_set_num_threads(std::max(1, threads)); }
int num_threads() { return omp_get_max_threads(); }
int thread_index() { return omp_get_thread_num(); }

}  // namespace dsv2
