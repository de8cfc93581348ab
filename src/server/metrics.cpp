#include "server/metrics.h"

#include <sstream>

namespace dsv2 {

void Histogram::observe(double seconds) {
  std::lock_guard lock(mutex_);
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  ++counts_[i];
  sum_ += seconds;
  ++count_;
}

std::string Histogram::text(const std::string& name, const std::string& help) const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
  int64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += counts_[i];
    out << name << "_bucket{le=\"" << kBounds[i] << "\"} " << cumulative << "\n";
  }
  out << name << "_bucket{le=\"+Inf\"} " << count_ << "\n" << name << "_sum " << sum_ << "\n" << name << "_count " << count_ << "\n";
  return out.str();
}

std::string ServerMetrics::text(const EngineStats& e) const {
  std::ostringstream out;
  auto metric = [&](const char* name, const char* type, const char* help, int64_t value) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << value << "\n";
  };
  out << "# HELP dsv2_requests_total Completion requests by outcome.\n# TYPE dsv2_requests_total counter\n"
      << "dsv2_requests_total{outcome=\"ok\"} " << requests_ok << "\n"
      << "dsv2_requests_total{outcome=\"client_error\"} " << requests_client_error << "\n"
      << "dsv2_requests_total{outcome=\"server_error\"} " << requests_server_error << "\n"
      << "dsv2_requests_total{outcome=\"cancelled\"} " << requests_cancelled << "\n";
  metric("dsv2_prompt_tokens_total", "counter", "Prompt tokens received.", e.prompt_tokens);
  metric("dsv2_prompt_tokens_reused_total", "counter", "Prompt tokens served from a cached prefix.", e.reused_prompt_tokens);
  metric("dsv2_generated_tokens_total", "counter", "Tokens generated.", e.generated_tokens);
  metric("dsv2_batch_steps_total", "counter", "Batched forward steps.", e.steps);
  metric("dsv2_batch_rows_total", "counter", "Token rows computed over all steps (rows / steps = mean batch).", e.batched_rows);
  metric("dsv2_speculative_steps_total", "counter", "Speculative steps (a sequence alone: drafts verified at once).",
         e.speculative_steps);
  metric("dsv2_draft_tokens_total", "counter", "Tokens the MTP module drafted.", e.drafted_tokens);
  metric("dsv2_draft_tokens_accepted_total", "counter", "Drafted tokens the model accepted.", e.accepted_tokens);
  metric("dsv2_queue_length", "gauge", "Requests waiting for a slot.", e.queued);
  metric("dsv2_active_sequences", "gauge", "Sequences in the running batch.", e.active);
  metric("dsv2_latent_cache_bytes", "gauge", "Latent cache memory reserved (active and idle sequences).", e.cache_bytes);
  out << time_to_first_token.text("dsv2_time_to_first_token_seconds", "From request to first generated token.");
  out << request_duration.text("dsv2_request_duration_seconds", "From request to last generated token.");
  return out.str();
}

}  // namespace dsv2
