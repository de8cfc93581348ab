// dsv2 serve: the OpenAI-compatible HTTP server.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cli/commands.h"
#include "core/error.h"
#include "model/model.h"
#include "model/mtp.h"
#include "ops/gemm_bf16.h"
#include "runtime/chat_template.h"
#include "server/http_server.h"

namespace dsv2::cli {

namespace {
int signal_pipe[2] = {-1, -1};
void wake_watcher(int) {  // a signal handler may only do async-signal-safe things: write a byte
  const char byte = 1;
  (void)!::write(signal_pipe[1], &byte, 1);
}

// In one process a SIGINT or SIGTERM stops the server: listen() returns and
// the process exits 0. The stop is retried until listen() has returned: a
// stop() that arrives before the listening socket is up is ignored (httplib
// stops only a running server), and the server would never end.
std::mutex server_mutex;
bool server_gone = false;  // run_serve is past listen(): the watcher must not touch the server
struct MarkServerGone {  // declared after the server, so it runs first when the server's scope ends
  ~MarkServerGone() {
    std::lock_guard lock(server_mutex);
    server_gone = true;
  }
};

void stop_on_signals(Server& server) {
  if (::pipe(signal_pipe) != 0) throw Error("serve: cannot create a pipe for signals");
  std::thread([&server] {
    char byte;
    while (::read(signal_pipe[0], &byte, 1) != 1) {
    }
    for (;;) {
      {
        std::lock_guard lock(server_mutex);
        if (server_gone) return;
        server.stop();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }).detach();
  std::signal(SIGINT, wake_watcher);
  std::signal(SIGTERM, wake_watcher);
}

// Under mpirun a SIGTERM (or SIGINT) means the job is ending: mpirun sends it
// when another rank has stopped, and a second later kills what is left. The
// engine, waiting for that rank inside a collective, can finish nothing: the
// requests in flight are answered with 503 at once and the process leaves.
void watch_for_job_end(Server& server) {
  if (::pipe(signal_pipe) != 0) throw Error("serve: cannot create a pipe for signals");
  std::thread([&server] {
    char byte;
    while (::read(signal_pipe[0], &byte, 1) != 1) {
    }
    server.abandon("the server's MPI job is ending (a rank stopped); this request cannot be completed");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the handlers send their 503s
    std::fprintf(stderr, "dsv2 serve: error: the MPI job is ending (a rank stopped or mpirun was interrupted); "
                         "requests in flight were answered with 503\n");
    std::_Exit(1);
  }).detach();
  std::signal(SIGINT, wake_watcher);
  std::signal(SIGTERM, wake_watcher);
}
}  // namespace

int run_serve(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 serve [-m DIR] [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--parallel N] [--ctx N] "
            "[--speculative mtp [--draft N]]\n\n"
            "With --speculative mtp (V3-layout models with an MTP layer), a request decoded alone drafts N tokens\n"
            "per step with the MTP module and verifies them in one step; while several run, they share the batched\n"
            "step. Answers are those of plain serving (greedy: the same tokens; sampling: the model's distribution);\n"
            "requests that sample with repeat_penalty, frequency_penalty or presence_penalty get a 400.",
            {kModelOption,
             {"host", 0, true, "ADDR      address to bind (default 127.0.0.1: this machine only)"},
             {"port", 0, true, "N         TCP port (default 8080; 0 picks a free one)"},
             {"api-key", 0, true, "KEY       require 'Authorization: Bearer KEY' on /v1/ routes (default: $DSV2_API_KEY)"},
             {"parallel", 0, true, "N         sequences decoded together in one batch (default 4)"},
             {"ctx", 0, true, "N         context per sequence, prompt + completion (default: the model's, at most 4096)"},
             {"queue", 0, true, "N         requests allowed to wait for a slot before 503 (default 64)"},
             {"max-body", 0, true, "BYTES     largest request body accepted (default 1048576)"},
             kSpeculativeOption, kDraftOption, kQuantizeOption, kActivationTermsOption, kRepackOption, kCacheTypeOption, kExpertParallelOption, kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  std::string dir;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> owned_model;
  std::unique_ptr<MtpModule> drafter;
  ServerOptions options;
  set_up_on_all_ranks([&] {
    apply_thread_option(args);
    // Continuous batching: a request must get the same tokens whatever it shares a
    // step with. gemm_bf16 rounds activations to bf16 only for products of >= 32
    // rows, so the server keeps float32 activations in every product (a CI run
    // saw greedy speculative output differ from plain under concurrency).
    use_gemm_bf16_for_prefill(false);
    dir = model_dir_option(args);
    if (!Tokenizer::exists_in(dir)) throw Error(dir + ": serving needs tokenizer.json in the model directory");
    tokenizer = Tokenizer::load(dir);
    options.host = args.get("host", "127.0.0.1");
    options.port = static_cast<int>(args.get_int("port", 8080));
    if (options.port < 0 || options.port > 65535) throw UsageError("option --port: must be in [0, 65535]");
    const char* env_key = std::getenv("DSV2_API_KEY");
    options.api_key = args.get("api-key", env_key ? env_key : "");
    options.model_name = std::filesystem::path(dir).lexically_normal().filename().string();
    if (options.model_name.empty()) options.model_name = std::filesystem::path(dir).lexically_normal().parent_path().filename().string();
    const int64_t max_body = args.get_int("max-body", 1 << 20);
    if (max_body < 1) throw UsageError("option --max-body: must be positive");
    options.max_body_bytes = static_cast<size_t>(max_body);
    options.engine.parallel = args.get_int("parallel", 4);
    const bool speculative = speculative_option(args);
    options.engine.draft = draft_option(args);
    owned_model = load_model(args, dir);
    if (speculative) drafter = std::make_unique<MtpModule>(*owned_model);  // errors name the file and tensor
    options.engine.drafter = drafter.get();
    options.engine.context = args.get_int("ctx", std::min<int64_t>(owned_model->config().max_position_embeddings, 4096));
    options.engine.max_queue = args.get_int("queue", 64);
    options.engine.cache_type = cache_type_option(args);
    options.engine.idle_caches = options.engine.parallel;
    if (options.engine.parallel < 1) throw UsageError("option --parallel: must be at least 1");
    if (options.engine.context < 2) throw UsageError("option --ctx: must be at least 2");
    if (options.engine.max_queue < 0) throw UsageError("option --queue: must not be negative");
  });
  // Under mpirun the other ranks run rank 0's engine steps on their share of the model.
  if (owned_model->is_follower()) return owned_model->follow(), 0;
  Model& model = *owned_model;

  const ChatRenderer render = make_chat_renderer(*tokenizer, dir + "/tokenizer_config.json");
  Server server(model, *tokenizer, [render](const std::vector<ChatMessage>& messages) { return render(messages, true); }, options);
  const MarkServerGone mark_server_gone;
  if (model.plan().split()) {
    watch_for_job_end(server);
  } else {
    stop_on_signals(server);
  }
  const bool ok = server.listen([&](int port) {
    const std::string drafting =
        drafter ? ", speculative mtp with drafts of " + std::to_string(options.engine.draft) : std::string();
    std::fprintf(stderr, "dsv2 serve: %s on http://%s:%d (parallel %lld, context %lld%s)%s\n", options.model_name.c_str(),
                 options.host.c_str(), port, static_cast<long long>(options.engine.parallel),
                 static_cast<long long>(options.engine.context), drafting.c_str(),
                 options.api_key.empty() ? "" : ", API key required");
    // After the address line, which scripts read first.
    if (options.api_key.empty() && !is_loopback_host(options.host))
      std::fprintf(stderr, "dsv2 serve: warning: %s is not a loopback address and no --api-key is set: anyone who can "
                           "reach it can use the model\n", options.host.c_str());
  });
  if (!ok) throw Error("cannot listen on " + options.host + ":" + std::to_string(options.port) + " (in use, or not an address of this machine)");
  return 0;
}

}  // namespace dsv2::cli
