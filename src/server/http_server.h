// dsv2 serve: the OpenAI-compatible HTTP API (cpp-httplib) in front of the
// continuous-batching engine. Routes, authentication, body limits and error
// JSON live in http_server.cpp; the wire format in openai_api.cpp.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/chat_format.h"
#include "server/engine.h"

namespace dsv2 {

class Tokenizer;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;     // empty: no authentication
  std::string model_name;  // the id /v1/models lists and requests may name
  size_t max_body_bytes = 1 << 20;
  int http_threads = 64;
  EngineOptions engine;
};

// Whether binding `host` keeps the server to this machine: localhost,
// 127.0.0.0/8, ::1 (also IPv4-mapped). Anything else — 0.0.0.0, a LAN address,
// a name — may be reachable by others.
bool is_loopback_host(const std::string& host);

class Server {
 public:
  // `render_chat` turns messages into the prompt text (the model's chat template).
  Server(Model& model, const Tokenizer& tokenizer,
         std::function<std::string(const std::vector<ChatMessage>&)> render_chat, ServerOptions options);
  ~Server();

  // Binds and serves until stop(); false if the address cannot be bound.
  // port 0 picks a free port (see port()).
  bool listen(const std::function<void(int port)>& on_ready = {});
  void stop();
  // Gives up on every request in flight (and every later one) with a 503 that
  // says `reason`, without waiting for the engine: for a model split over MPI
  // ranks when one of them has stopped, so the engine cannot finish anything.
  // Safe from any thread; the handlers answer within moments.
  void abandon(const std::string& reason);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv2
