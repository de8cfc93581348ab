// The one place threads come from. Ops call parallel_for; they never start
// threads themselves. Backed by OpenMP so that nested calls stay serial.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace dsv2 {

// A non-owning reference to a callable `void(int64_t, int64_t)`: unlike
// std::function it never allocates, whatever the lambda captures (decoding
// calls parallel_for dozens of times per token). Valid while the callable is.
class RangeBody {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, RangeBody>>>
  RangeBody(F&& f)  // NOLINT: implicit, so that lambdas pass straight in
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* object, int64_t begin, int64_t end) { (*static_cast<std::remove_reference_t<F>*>(object))(begin, end); }) {}
  void operator()(int64_t begin, int64_t end) const { call_(object_, begin, end); }

 private:
  void* object_;
  void (*call_)(void*, int64_t, int64_t);
};

// Runs body(begin, end) over [0, count) split into chunks of at least `grain`
// items, spread over the worker threads.
void parallel_for(int64_t count, int64_t grain, RangeBody body);

// Runs body(i, i + 1) for each i in [0, count), each item going to whichever
// thread is free next: for items of uneven cost (experts with their tokens)
// whose results do not depend on the thread that computes them. Calls made
// inside an item (GEMMs included) run on that item's thread.
void parallel_for_each(int64_t count, RangeBody body);

// Grain of elementwise loops (a few multiply-adds per element): below this
// many elements, waking a second thread costs more than it saves.
constexpr int64_t kElementwiseGrain = 16384;

void set_num_threads(int threads);
int num_threads();
// Index of the calling worker inside a parallel_for, 0 outside.
int thread_index();

}  // namespace dsv2
