// The one place threads come from. Ops call parallel_for; they never start
// threads themselves. Backed by OpenMP so that nested calls stay serial.
#pragma once

#include <cstdint>
#include <functional>

namespace dsv2 {

// Runs body(begin, end) over [0, count) split into chunks of at least `grain`
// items, spread over the worker threads.
void parallel_for(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

void set_num_threads(int threads);
int num_threads();
// Index of the calling worker inside a parallel_for, 0 outside.
int thread_index();

}  // namespace dsv2
