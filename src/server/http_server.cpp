#include "server/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "server/chat_page.h"
#include "server/metrics.h"
#include "server/openai_api.h"
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

  void setup_routes();
  void handle_completion(const httplib::Request& req, httplib::Response& res, bool chat);
  std::shared_ptr<GenerationJob> make_job(const CompletionRequest& r);

  // Hands the job's tokens to `emit` as text while they arrive, applying stop
  // strings. `emit` returning false (the client is gone) cancels the job.
  // `idle` runs while nothing new arrived; returning false cancels too.
  CompletionResult follow(GenerationJob& job, const CompletionRequest& r, const std::function<bool(const std::string&)>& emit,
                          const std::function<bool()>& idle);
};

std::shared_ptr<GenerationJob> Server::Impl::make_job(const CompletionRequest& r) {
  auto job = std::make_shared<GenerationJob>();
  if (r.chat) {
    std::string text;
    try {
      text = render_chat(r.messages);
    } catch (const Error& e) {  // e.g. the template's raise_exception("roles must alternate")
      throw ApiError(400, e.what(), "messages");
    }
    job->prompt = tokenizer.encode(text, {false, true});
  } else {
    job->prompt = tokenizer.encode(r.prompt, {true, false});
  }
  const int64_t context = options.engine.context, prompt = static_cast<int64_t>(job->prompt.size());
  if (prompt == 0) throw ApiError(400, "the prompt is empty", r.chat ? "messages" : "prompt");
  const int64_t max_tokens = r.max_tokens.value_or(context - prompt);
  if (prompt + std::max<int64_t>(max_tokens, 1) > context)
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
  job->sampling.seed = r.seed.value_or(static_cast<uint64_t>(Clock::now().time_since_epoch().count()) ^ next_id.load());
  job->stop_ids = stop_ids;
  return job;
}

CompletionResult Server::Impl::follow(GenerationJob& job, const CompletionRequest& r,
                                      const std::function<bool(const std::string&)>& emit, const std::function<bool()>& idle) {
  StreamDecoder decoder(tokenizer);
  StopMatcher stops(r.stop);
  CompletionResult result;
  result.prompt_tokens = static_cast<int64_t>(job.prompt.size());
  size_t seen = 0;
  bool ended_by_eos = false, gone = false;
  std::string finish_reason, error;
  while (true) {
    std::vector<int32_t> fresh;
    bool done;
    {
      std::unique_lock lock(job.mutex);
      job.changed.wait_for(lock, std::chrono::milliseconds(500), [&] { return job.done || job.tokens.size() > seen; });
      fresh.assign(job.tokens.begin() + static_cast<std::ptrdiff_t>(seen), job.tokens.end());
      seen = job.tokens.size();
      done = job.done;
      finish_reason = job.finish_reason;
      error = job.error;
    }
    if (fresh.empty() && !done) {
      if (!idle()) gone = true;
    }
    for (int32_t id : fresh) {
      ++result.completion_tokens;
      if (std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end()) {
        ended_by_eos = true;
        break;
      }
      const std::string text = stops.push(decoder.push(id));
      if (!text.empty() && !emit(text)) gone = true;
      if (stops.stopped() || gone) break;
    }
    if (gone || stops.stopped() || ended_by_eos || done) break;
  }
  if (!gone && !stops.stopped()) {
    const std::string tail = stops.push(decoder.finish()) + stops.flush();
    if (!tail.empty() && !emit(tail)) gone = true;
  }
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
  std::shared_ptr<GenerationJob> job;
  try {
    r = parse_completion_request(req.body, chat);
    if (!r.model.empty() && r.model != options.model_name)
      throw ApiError(404, "The model '" + r.model + "' does not exist (this server serves '" + options.model_name + "')",
                     "model", "model_not_found");
    r.model = options.model_name;
    job = make_job(r);
    std::lock_guard lock(in_flight_mutex);
    if (!abandoned.empty()) throw ApiError(503, abandoned, "", "service_unavailable", "server_error");
    if (!engine.submit(job))
      throw ApiError(503, "the server is busy: " + std::to_string(engine.options().max_queue) +
                              " requests are already waiting; retry later", "", "", "server_error");
    std::erase_if(in_flight, [](const std::weak_ptr<GenerationJob>& j) { return j.expired(); });
    in_flight.push_back(job);
  } catch (const ApiError& e) {
    (e.status >= 500 ? metrics.requests_server_error : metrics.requests_client_error)++;
    send_error(res, e);
    return;
  }
  const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++);
  const int64_t created = unix_time();
  auto record = [this, job, start](const CompletionResult& result) {
    if (result.finish_reason == "cancelled") {
      ++metrics.requests_cancelled;
      return;
    }
    ++metrics.requests_ok;
    std::lock_guard lock(job->mutex);
    if (!job->tokens.empty()) metrics.time_to_first_token.observe(seconds_between(start, job->first_token));
    metrics.request_duration.observe(seconds_between(start, Clock::now()));
  };

  if (r.stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, r, job, id, created, record](size_t, httplib::DataSink& sink) {
          auto event = [&](const std::string& data) {
            const std::string line = "data: " + data + "\n\n";
            return sink.write(line.data(), line.size());
          };
          bool first = true;
          try {
            const CompletionResult result = follow(
                *job, r,
                [&](const std::string& text) {
                  const bool ok = event(completion_chunk(r, id, created, text, "", first));
                  first = false;
                  return ok;
                },
                [&] {
                  static constexpr char kPing[] = ": ping\n\n";  // an SSE comment: clients ignore it
                  return sink.write(kPing, sizeof kPing - 1);
                });
            record(result);
            if (result.finish_reason == "cancelled") return false;
            event(completion_chunk(r, id, created, "", result.finish_reason, first));
            if (r.include_usage) event(usage_chunk(r, id, created, result.prompt_tokens, result.completion_tokens));
          } catch (const ApiError& e) {
            ++metrics.requests_server_error;
            event(e.json());
          }
          event("[DONE]");
          sink.done();
          return true;
        },
        [job](bool success) {
          if (!success) job->cancelled = true;
        });
    return;
  }

  // Whole response. It is sent chunked, and while the model works a space
  // (valid leading JSON whitespace) goes out every half second: writing is the
  // only way to notice a client that hung up, whose work is then cancelled.
  res.set_chunked_content_provider(
      "application/json",
      [this, r, job, id, created, record](size_t, httplib::DataSink& sink) {
        std::string text;
        std::string body;
        try {
          const CompletionResult result = follow(
              *job, r,
              [&](const std::string& piece) {
                text += piece;
                return true;
              },
              [&] { return sink.write(" ", 1); });
          record(result);
          if (result.finish_reason == "cancelled") return false;
          CompletionResult whole = result;
          whole.text = text;
          body = completion_response(r, id, created, whole);
        } catch (const ApiError& e) {
          ++metrics.requests_server_error;
          body = e.json();
        }
        sink.write(body.data(), body.size());
        sink.done();
        return true;
      },
      [job](bool success) {
        if (!success) job->cancelled = true;
      });
}

void Server::Impl::setup_routes() {
  http.new_task_queue = [n = options.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
  http.set_payload_max_length(options.max_body_bytes);
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/v1/", 0) == 0 && !authorized(req)) {
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
