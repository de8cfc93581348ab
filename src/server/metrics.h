// Server counters and latency histograms, exported in Prometheus' text format
// at GET /metrics.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "server/engine.h"

namespace dsv2 {

class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  void observe(double seconds);
  // "<name>_bucket{le=...} n" lines, _sum and _count.
  std::string text(const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mutex_;
  std::array<int64_t, kBounds.size() + 1> counts_{};
  double sum_ = 0.0;
  int64_t count_ = 0;
};

struct ServerMetrics {
  std::atomic<int64_t> requests_ok{0}, requests_client_error{0}, requests_server_error{0}, requests_cancelled{0};
  Histogram time_to_first_token, request_duration;

  std::string text(const EngineStats& engine) const;
};

}  // namespace dsv2
