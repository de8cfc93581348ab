#include "server/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "runtime/speculative.h"
#include "server/chat_page.h"
#include "server/metrics.h"
#include "server/openai_api.h"
#include "server/token_logprobs.h"
#include "server/tokenizer_routes.h"
#include "tokenizer/tokenizer.h"

namespace dsv2 {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(e.json(), "application/json");
}

}  // namespace

// One choice of a response: its job, and the prompt as echo shows it.
struct Choice {
  std::shared_ptr<GenerationJob> job;
  std::string prompt_text;
  // Tokens the server added around a text prompt (BOS): listed in the
  // logprobs, not part of prompt_text.
  size_t added_front = 0, added_back = 0;
};

// Receives text and the logprobs of the tokens since the last call (either may
// be empty); false when the client is gone.
using Emit = std::function<bool(const std::string& text, const std::vector<LogprobEntry>& logprobs)>;

struct Server::Impl {
  Model& model;
  const Tokenizer& tokenizer;
  std::function<std::string(const std::vector<ChatMessage>&)> render_chat;
  ServerOptions options;
  Engine engine;
  ServerMetrics metrics;
  httplib::Server http;
  std::atomic<uint64_t> next_id{1};
  std::vector<int64_t> stop_ids;
  // Requests in flight, for abandon(); set once the server gave up.
  std::mutex in_flight_mutex;
  std::vector<std::weak_ptr<GenerationJob>> in_flight;
  std::string abandoned;  // the reason, under in_flight_mutex

  Impl(Model& m, const Tokenizer& t, std::function<std::string(const std::vector<ChatMessage>&)> r, ServerOptions o)
      : model(m), tokenizer(t), render_chat(std::move(r)), options(std::move(o)), engine(m, options.engine) {
    stop_ids = model.config().eos_token_ids;
    if (tokenizer.eos_id() >= 0) stop_ids.push_back(tokenizer.eos_id());
    setup_routes();
  }

  bool authorized(const httplib::Request& req) const {
    return options.api_key.empty() || req.get_header_value("Authorization") == "Bearer " + options.api_key;
  }
  bool is_stop_id(int32_t id) const { return std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end(); }

  void setup_routes();
  void handle_completion(const httplib::Request& req, httplib::Response& res, bool chat);
  Choice make_choice(const CompletionRequest& r, size_t prompt);
  std::vector<int32_t> prompt_ids(const CompletionRequest& r, size_t prompt, Choice& choice) const;
  std::vector<Choice> submit(const CompletionRequest& r);

  // Hands the choice's echo and tokens to `emit` as text while they arrive,
  // applying stop strings. `emit` returning false (the client is gone) cancels
  // the job. `idle` runs while nothing new arrived; returning false cancels
  // too. The result's logprobs are those no emit carried.
  CompletionResult follow(const Choice& choice, const CompletionRequest& r, const Emit& emit,
                          const std::function<bool()>& idle);
};

std::vector<int32_t> Server::Impl::prompt_ids(const CompletionRequest& r, size_t index, Choice& choice) const {
  if (r.chat) {
    std::string text;
    try {
      text = render_chat(r.messages);
    } catch (const Error& e) {  // e.g. the template's raise_exception("roles must alternate")
      throw ApiError(400, e.what(), "messages");
    }
    return tokenizer.encode(text, {false, true});
  }
  const Prompt& p = r.prompts[index];
  if (!p.is_ids) {
    choice.prompt_text = p.text;
    choice.added_front = tokenizer.prefix_ids().size();
    choice.added_back = tokenizer.suffix_ids().size();
    return tokenizer.encode(p.text, {true, false});
  }
  const int64_t vocab = std::min<int64_t>(model.config().vocab_size, tokenizer.vocab_size());
  for (int32_t id : p.ids)
    if (id >= vocab || tokenizer.id_to_token(id).empty())
      throw ApiError(400,
                     "'prompt': token id " + std::to_string(id) + " is not in the vocabulary (size " +
                         std::to_string(vocab) + ")",
                     "prompt");
  if (r.echo) choice.prompt_text = tokenizer.decode(p.ids);  // special tokens as their text: they are the client's
  return p.ids;
}

Choice Server::Impl::make_choice(const CompletionRequest& r, size_t index) {
  Choice choice;
  auto job = std::make_shared<GenerationJob>();
  choice.job = job;
  job->prompt = prompt_ids(r, index, choice);
  const int64_t context = options.engine.context, prompt = static_cast<int64_t>(job->prompt.size());
  if (prompt == 0) throw ApiError(400, "the prompt is empty", r.chat ? "messages" : "prompt");
  const int64_t max_tokens = r.max_tokens.value_or(context - prompt);
  // max_tokens 0 (echo) scores the prompt alone; otherwise at least one token is generated.
  const int64_t needed = prompt + (r.max_tokens == 0 ? 0 : std::max<int64_t>(max_tokens, 1));
  if (needed > context)
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(context) + " tokens. However, you requested " +
                       std::to_string(prompt + max_tokens) + " tokens (" + std::to_string(prompt) + " in the " +
                       (r.chat ? "messages" : "prompt") + ", " + std::to_string(max_tokens) +
                       " in the completion). Please reduce the length of the " + (r.chat ? "messages" : "prompt") +
                       " or completion.",
                   r.chat ? "messages" : "prompt", "context_length_exceeded");
  job->max_tokens = max_tokens;
  job->sampling = r.sampling;
  // The parser checked every range but this one; the engine thread's sampler must not throw.
  if (auto problem = find_sampling_problem(job->sampling, model.config().vocab_size))
    throw ApiError(400, "'" + problem->field + "': " + problem->message, problem->field);
  // Speculative sampling keeps the model's distribution only without the penalties (runtime/speculative.h).
  if (options.engine.drafter) {
    const std::string field = speculative_sampling_problem(job->sampling);
    if (!field.empty())
      throw ApiError(400,
                     "'" + field + "': this server decodes speculatively (--speculative mtp), which cannot apply " + field +
                         " exactly when sampling (it depends on the tokens accepted within a step); use temperature 0 or leave " +
                         field + " unset",
                     field);
  }
  job->sampling.seed = r.seed.value_or(static_cast<uint64_t>(Clock::now().time_since_epoch().count()) ^ next_id.load());
  job->stop_ids = stop_ids;
  job->top_logprobs = r.top_logprobs;
  job->score_prompt = r.echo && r.top_logprobs >= 0;
  return choice;
}

// Queues one job per prompt (all or none).
std::vector<Choice> Server::Impl::submit(const CompletionRequest& r) {
  std::vector<Choice> choices;
  const size_t n = r.chat ? 1 : r.prompts.size();
  for (size_t i = 0; i < n; ++i) choices.push_back(make_choice(r, i));
  std::lock_guard lock(in_flight_mutex);
  if (!abandoned.empty()) throw ApiError(503, abandoned, "", "service_unavailable", "server_error");
  for (size_t i = 0; i < choices.size(); ++i) {
    if (engine.submit(choices[i].job)) continue;
    for (size_t j = 0; j < i; ++j) choices[j].job->cancelled = true;  // the engine drops them at its next step
    throw ApiError(503, "the server is busy: " + std::to_string(engine.options().max_queue) +
                            " requests are already waiting; retry later", "", "", "server_error");
  }
  std::erase_if(in_flight, [](const std::weak_ptr<GenerationJob>& j) { return j.expired(); });
  for (const Choice& c : choices) in_flight.push_back(c.job);
  return choices;
}

CompletionResult Server::Impl::follow(const Choice& choice, const CompletionRequest& r, const Emit& emit,
                                      const std::function<bool()>& idle) {
  GenerationJob& job = *choice.job;
  StreamDecoder decoder(tokenizer);
  StopMatcher stops(r.stop);
  LogprobEntries entries(tokenizer);
  const bool with_logprobs = r.top_logprobs >= 0;
  std::vector<LogprobEntry> pending;  // logprobs not yet handed to emit
  CompletionResult result;
  result.prompt_tokens = static_cast<int64_t>(job.prompt.size());
  size_t seen = 0;
  bool echoed = !r.echo, ended_by_eos = false, gone = false;
  std::string finish_reason, error;
  while (true) {
    std::vector<int32_t> fresh;
    std::vector<TokenLogprob> fresh_logprobs, prompt_logprobs;
    bool done, echo_now;
    {
      std::unique_lock lock(job.mutex);
      // The echo goes first, once the engine scored the prompt (at once when nothing is to be scored).
      auto echo_ready = [&] { return !echoed && (!job.score_prompt || job.prompt_scored); };
      job.changed.wait_for(lock, std::chrono::milliseconds(500),
                           [&] { return job.done || job.tokens.size() > seen || echo_ready(); });
      echo_now = echo_ready();
      if (echo_now) prompt_logprobs = job.prompt_logprobs;
      fresh.assign(job.tokens.begin() + static_cast<std::ptrdiff_t>(seen), job.tokens.end());
      if (with_logprobs)
        fresh_logprobs.assign(job.logprobs.begin() + static_cast<std::ptrdiff_t>(seen), job.logprobs.end());
      seen = job.tokens.size();
      done = job.done;
      finish_reason = job.finish_reason;
      error = job.error;
    }
    if (echo_now) {
      echoed = true;
      for (size_t i = 0; with_logprobs && i < job.prompt.size(); ++i) {
        const bool in_text = i >= choice.added_front && i + choice.added_back < job.prompt.size();
        pending.push_back(entries.next(job.prompt[i], i == 0 ? nullptr : &prompt_logprobs[i - 1], in_text));
      }
      if (!emit(choice.prompt_text, pending)) gone = true;
      pending.clear();
    }
    if (fresh.empty() && !done && !gone && !echo_now) {
      if (!idle()) gone = true;
    }
    for (size_t k = 0; k < fresh.size() && !gone; ++k) {
      const int32_t id = fresh[k];
      ++result.completion_tokens;
      const bool eos = is_stop_id(id);
      if (with_logprobs) pending.push_back(entries.next(id, &fresh_logprobs[k], !eos));
      if (eos) {
        ended_by_eos = true;
        break;
      }
      const std::string text = stops.push(decoder.push(id));
      if (!text.empty()) {
        if (!emit(text, pending)) gone = true;
        pending.clear();
      }
      if (stops.stopped()) break;
    }
    if (gone || stops.stopped() || ended_by_eos || done) break;
  }
  if (!gone && !stops.stopped()) {
    const std::string tail = stops.push(decoder.finish()) + stops.flush();
    if (!tail.empty()) {
      if (!emit(tail, pending)) gone = true;
      pending.clear();
    }
  }
  result.logprobs = std::move(pending);
  if (gone || stops.stopped() || ended_by_eos) job.cancelled = true;  // the engine frees the slot at its next step
  if (gone) {
    result.finish_reason = "cancelled";
  } else if (stops.stopped() || ended_by_eos) {
    result.finish_reason = "stop";
  } else if (finish_reason == "error") {
    throw ApiError(500, "generation failed: " + error, "", "", "server_error");
  } else if (finish_reason == "unavailable") {  // abandon()
    throw ApiError(503, error, "", "service_unavailable", "server_error");
  } else {
    result.finish_reason = finish_reason == "length" ? "length" : "stop";
  }
  return result;
}

void Server::Impl::handle_completion(const httplib::Request& req, httplib::Response& res, bool chat) {
  const auto start = Clock::now();
  CompletionRequest r;
  std::vector<Choice> choices;
  try {
    r = parse_completion_request(req.body, chat);
    if (!r.model.empty() && r.model != options.model_name)
      throw ApiError(404, "The model '" + r.model + "' does not exist (this server serves '" + options.model_name + "')",
                     "model", "model_not_found");
    r.model = options.model_name;
    choices = submit(r);
  } catch (const ApiError& e) {
    (e.status >= 500 ? metrics.requests_server_error : metrics.requests_client_error)++;
    send_error(res, e);
    return;
  }
  const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++);
  const int64_t created = unix_time();
  auto record = [this, job = choices[0].job, start](const CompletionResult& result) {
    if (result.finish_reason == "cancelled") {
      ++metrics.requests_cancelled;
      return;
    }
    ++metrics.requests_ok;
    std::lock_guard lock(job->mutex);
    if (!job->tokens.empty()) metrics.time_to_first_token.observe(seconds_between(start, job->first_token));
    metrics.request_duration.observe(seconds_between(start, Clock::now()));
  };
  auto cancel_all = [choices](bool success) {
    if (!success)
      for (const Choice& c : choices) c.job->cancelled = true;
  };

  if (r.stream) {  // one choice: the parser refuses several prompts with stream
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, r, choice = choices[0], id, created, record](size_t, httplib::DataSink& sink) {
          auto event = [&](const std::string& data) {
            const std::string line = "data: " + data + "\n\n";
            return sink.write(line.data(), line.size());
          };
          bool first = true;
          try {
            const CompletionResult result = follow(
                choice, r,
                [&](const std::string& text, const std::vector<LogprobEntry>& logprobs) {
                  const bool ok = event(completion_chunk(r, id, created, text, "", first, logprobs));
                  first = false;
                  return ok;
                },
                [&] {
                  static constexpr char kPing[] = ": ping\n\n";  // an SSE comment: clients ignore it
                  return sink.write(kPing, sizeof kPing - 1);
                });
            record(result);
            if (result.finish_reason == "cancelled") return false;
            event(completion_chunk(r, id, created, "", result.finish_reason, first, result.logprobs));
            if (r.include_usage) event(usage_chunk(r, id, created, result.prompt_tokens, result.completion_tokens));
          } catch (const ApiError& e) {
            ++metrics.requests_server_error;
            event(e.json());
          }
          event("[DONE]");
          sink.done();
          return true;
        },
        cancel_all);
    return;
  }

  // Whole response. It is sent chunked, and while the model works a space
  // (valid leading JSON whitespace) goes out every half second: writing is the
  // only way to notice a client that hung up, whose work is then cancelled.
  res.set_chunked_content_provider(
      "application/json",
      [this, r, choices, id, created, record, cancel_all](size_t, httplib::DataSink& sink) {
        std::vector<CompletionResult> results;
        std::string body;
        try {
          for (const Choice& choice : choices) {
            std::string text;
            std::vector<LogprobEntry> logprobs;
            CompletionResult result = follow(
                choice, r,
                [&](const std::string& piece, const std::vector<LogprobEntry>& entries) {
                  text += piece;
                  logprobs.insert(logprobs.end(), entries.begin(), entries.end());
                  return true;
                },
                [&] { return sink.write(" ", 1); });
            if (result.finish_reason == "cancelled") {
              record(result);
              cancel_all(false);
              return false;
            }
            result.text = std::move(text);
            logprobs.insert(logprobs.end(), result.logprobs.begin(), result.logprobs.end());
            result.logprobs = std::move(logprobs);
            results.push_back(std::move(result));
          }
          record(results[0]);
          body = completion_response(r, id, created, results);
        } catch (const ApiError& e) {
          ++metrics.requests_server_error;
          cancel_all(false);
          body = e.json();
        }
        sink.write(body.data(), body.size());
        sink.done();
        return true;
      },
      cancel_all);
}

void Server::Impl::setup_routes() {
  http.new_task_queue = [n = options.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
  http.set_payload_max_length(options.max_body_bytes);
  // Without it a response written in pieces (headers, then body) waits for the
  // client's delayed ACK: 40 ms a request, which clients that send many small
  // ones (lm-evaluation-harness scoring choices one by one) pay thousands of times.
  http.set_tcp_nodelay(true);
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // The tokenizer routes are the model's too: the key guards them as well.
    const bool guarded = req.path.rfind("/v1/", 0) == 0 || req.path == "/tokenize" || req.path == "/detokenize" ||
                         req.path == "/tokenizer_info";
    if (guarded && !authorized(req)) {
      ++metrics.requests_client_error;
      send_error(res, ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'", "", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Statuses httplib sets itself (404 for unknown routes, 413 for big bodies,
  // 400 for broken HTTP) get OpenAI's error JSON too.
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = "request failed";
    if (res.status == 404) message = "no route for " + req.method + " " + req.path;
    if (res.status == 405) message = req.method + " is not allowed on " + req.path;
    if (res.status == 413) message = "the request body is larger than " + std::to_string(options.max_body_bytes) + " bytes";
    if (res.status == 400) message = "malformed HTTP request";
    ++metrics.requests_client_error;
    res.set_content(ApiError(res.status, message).json(), "application/json");
  });
  http.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string message = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
    }
    ++metrics.requests_server_error;
    send_error(res, ApiError(500, message, "", "", "server_error"));
  });

  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    const nlohmann::json j = {{"object", "list"},
                              {"data", {{{"id", options.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "dsv2"}}}}};
    res.set_content(j.dump(), "application/json");
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.text(engine.stats()), "text/plain; version=0.0.4");
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(chat_page_html(), "text/html; charset=utf-8"); });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { handle_completion(req, res, false); });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { handle_completion(req, res, true); });
  add_tokenizer_routes(http, tokenizer, options.engine.context, [this] { ++metrics.requests_client_error; });
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

Server::Server(Model& model, const Tokenizer& tokenizer, std::function<std::string(const std::vector<ChatMessage>&)> render_chat,
               ServerOptions options)
    : impl_(std::make_unique<Impl>(model, tokenizer, std::move(render_chat), std::move(options))) {}

Server::~Server() = default;

bool Server::listen(const std::function<void(int)>& on_ready) {
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not end the server
  const int port = impl_->options.port == 0 ? impl_->http.bind_to_any_port(impl_->options.host)
                                            : (impl_->http.bind_to_port(impl_->options.host, impl_->options.port) ? impl_->options.port : -1);
  if (port < 0) return false;
  if (on_ready) on_ready(port);
  return impl_->http.listen_after_bind();
}

void Server::stop() { impl_->http.stop(); }

void Server::abandon(const std::string& reason) {
  std::lock_guard lock(impl_->in_flight_mutex);
  impl_->abandoned = reason;
  for (const auto& weak : impl_->in_flight)
    if (const std::shared_ptr<GenerationJob> job = weak.lock()) {
      std::lock_guard job_lock(job->mutex);
      if (job->done) continue;
      job->done = true;
      job->finish_reason = "unavailable";
      job->error = reason;
      job->changed.notify_all();
    }
}

}  // namespace dsv2
