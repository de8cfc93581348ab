#include "train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <cstring>
#include <sstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "train/training_model.h"
#include "train/weights_io.h"

namespace dsv2 {

namespace fs = std::filesystem;

double EvalResult::perplexity() const { return std::exp(loss); }
double EvalResult::bits_per_byte() const { return bytes > 0 ? loss * tokens / std::log(2.0) / bytes : 0.0; }

namespace {

struct State {
  int64_t step = 0, tokens = 0;
  std::string sampler;
};

// Checkpoint = DIR/checkpoint-<step>/ {model.safetensors, optimizer.safetensors, state.json},
// written under a temporary name and renamed; DIR/latest names the newest one.
void save_checkpoint(const std::string& out, const TrainWeights& tw, AdamW& adam, const State& state,
                     const nlohmann::json& options) {
  const std::string name = "checkpoint-" + std::to_string(state.step);
  const fs::path tmp = fs::path(out) / (name + ".tmp"), final_dir = fs::path(out) / name;
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_model_dir(tw, tmp.string(), false);
  std::vector<TensorToWrite> moments;
  for (const auto& info : tw.infos()) {
    moments.push_back({info.name + ".exp_avg", DType::F32, info.shape, adam.m().data() + info.offset, uint64_t(info.size) * 4});
    moments.push_back({info.name + ".exp_avg_sq", DType::F32, info.shape, adam.v().data() + info.offset, uint64_t(info.size) * 4});
  }
  write_safetensors((tmp / "optimizer.safetensors").string(), moments);
  const nlohmann::json j = {{"step", state.step}, {"tokens", state.tokens}, {"adam_steps", adam.steps()},
                            {"sampler", state.sampler}, {"options", options}};
  write_file_atomically((tmp / "state.json").string(), j.dump(1));
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  write_file_atomically((fs::path(out) / "latest").string(), name + "\n");
  for (const auto& entry : fs::directory_iterator(out)) {  // keep only the newest
    const std::string n = entry.path().filename().string();
    if (n.rfind("checkpoint-", 0) == 0 && n != name) fs::remove_all(entry.path());
  }
}

State load_checkpoint(const std::string& out, TrainWeights& tw, AdamW& adam) {
  std::string name = read_text_file((fs::path(out) / "latest").string());
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  const fs::path dir = fs::path(out) / name;
  load_train_weights(tw, dir.string());
  SafetensorsFile moments((dir / "optimizer.safetensors").string());
  for (const auto& info : tw.infos())
    for (auto [suffix, buffer] : {std::pair{".exp_avg", &adam.m()}, std::pair{".exp_avg_sq", &adam.v()}}) {
      const TensorInfo* t = moments.find(info.name + suffix);
      require(t && t->dtype == DType::F32 && t->numel() == info.size, dir.string() + ": optimizer state for '" + info.name + "' missing");
      std::memcpy(buffer->data() + info.offset, t->data, t->nbytes);
    }
  const auto j = nlohmann::json::parse(read_text_file((dir / "state.json").string()));
  adam.set_steps(j["adam_steps"].get<int64_t>());
  return {j["step"].get<int64_t>(), j["tokens"].get<int64_t>(), j["sampler"].get<std::string>()};
}

// Drops log lines past `step`, so that a resumed run's log reads like an uninterrupted one.
void truncate_log(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("step") && j["step"].get<int64_t>() >= step) continue;
    } catch (const nlohmann::json::exception&) {
      continue;  // a line torn by the crash
    }
    kept += line + "\n";
  }
  write_file_atomically(path, kept);
}

EvalResult evaluate(TrainingModel& model, const TokenStream& stream, int64_t seq_len, int64_t max_batches) {
  EvalResult r;
  double nats = 0.0;
  int64_t eval_tokens_total = static_cast<int64_t>(stream.tokens.size()) - 1;
  for (const Batch& b : evaluation_batches(stream, seq_len, 8, max_batches)) {
    const StepResult s = model.run(b, false, false);
    nats += s.loss * s.targets;
    r.tokens += s.targets;
  }
  r.loss = r.tokens ? nats / r.tokens : 0.0;
  // Bytes in proportion to the tokens evaluated (exact when the whole stream is used).
  r.bytes = eval_tokens_total > 0 ? static_cast<int64_t>(static_cast<double>(stream.bytes) * r.tokens / eval_tokens_total) : 0;
  return r;
}

}  // namespace

double train(const Config& config, const TokenData& data, const TrainerOptions& o) {
  require(o.steps > 0 && o.seq_len > 1 && o.batch_tokens >= o.seq_len, "train: need steps > 0 and batch_tokens >= seq_len > 1");
  fs::create_directories(o.out_dir);
  TrainWeights tw(config);
  AdamW adam(tw, o.adam);
  TrainingModel model(tw, o.moe);
  BatchSampler sampler(data.train, o.seed, o.never_drop_share);
  const nlohmann::json option_record = {{"steps", o.steps}, {"seq_len", o.seq_len}, {"batch_tokens", o.batch_tokens},
                                        {"lr", o.lr.peak}, {"seed", o.seed}};
  State state;
  const std::string log_path = (fs::path(o.out_dir) / "metrics.jsonl").string();
  if (o.resume && fs::exists(fs::path(o.out_dir) / "latest")) {
    state = load_checkpoint(o.out_dir, tw, adam);
    sampler.set_state(state.sampler);
    truncate_log(log_path, state.step);
  } else {
    tw.init(o.init_std, o.seed);
    std::ofstream(log_path, std::ios::trunc).close();
  }
  std::ofstream log(log_path, std::ios::app);
  const bool tty = ::isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  const int64_t first_step = state.step;
  double last_val = NAN;

  auto checkpoint = [&] {
    state.sampler = sampler.state();
    save_checkpoint(o.out_dir, tw, adam, state, option_record);
  };
  const int64_t full = std::max<int64_t>(1, o.batch_tokens / o.seq_len);
  auto sequences_at = [&](int64_t step) { return std::max<int64_t>(1, std::llround(full * o.ramp.share(step))); };
  int64_t planned_tokens = 0;  // the whole run's tokens, for the step schedule's decay points
  for (int64_t s = 0; s < o.steps; ++s) planned_tokens += sequences_at(s) * o.seq_len;
  for (; state.step < o.steps; ++state.step) {
    const auto step_start = std::chrono::steady_clock::now();
    const int64_t sequences = sequences_at(state.step);
    const Batch batch = sampler.next(sequences, o.seq_len);
    tw.zero_grads();
    const StepResult r = model.run(batch, true, true);
    const auto optimizer_start = std::chrono::steady_clock::now();
    const double grad_norm = clip_grad_norm(tw, o.clip);
    const double lr = o.lr.at(state.step, o.steps, static_cast<double>(state.tokens) / static_cast<double>(planned_tokens));
    adam.step(tw, lr);
    const double optimizer_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - optimizer_start).count();
    // V3's aux-loss-free balancing: b_i += γ·sign(mean load − load_i), for selection only.
    if (o.moe.bias_update_speed > 0.0 && config.topk_method == "noaux_tc") {
      size_t moe_index = 0;
      for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
        if (!config.is_moe_layer(l)) continue;
        float* bias = mut(tw.w().layers[l].moe.e_score_correction_bias);
        const auto& load = r.selected[moe_index++];
        double mean = 0.0;
        for (int64_t x : load) mean += static_cast<double>(x) / load.size();
        for (size_t e = 0; e < load.size(); ++e)
          bias[e] += static_cast<float>(o.moe.bias_update_speed * ((mean > load[e]) - (mean < load[e])));
      }
    }
    state.tokens += batch.batch * batch.seq_len;
    const double step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    nlohmann::ordered_json line = {{"step", state.step}, {"loss", r.loss}, {"balance_loss", r.balance_loss},
                                   {"expert_balance", r.expert_loss}, {"device_balance", r.device_loss},
                                   {"comm_balance", r.comm_loss}, {"sequence_balance", r.sequence_loss},
                                   {"max_violation", r.max_violation}, {"dropped_share", r.dropped_share},
                                   {"lr", lr}, {"grad_norm", grad_norm}, {"batch_tokens", batch.batch * batch.seq_len},
                                   {"tokens", state.tokens}, {"tokens_per_s", batch.batch * batch.seq_len / step_seconds},
                                   {"seconds", {{"step", step_seconds},
                                                {"attention_forward", r.seconds.attention_forward},
                                                {"attention_backward", r.seconds.attention_backward},
                                                {"ffn_forward", r.seconds.ffn_forward},
                                                {"ffn_backward", r.seconds.ffn_backward},
                                                {"lm_head", r.seconds.lm_head},
                                                {"optimizer", optimizer_seconds}}}};
    const bool eval_now = o.eval_every > 0 && ((state.step + 1) % o.eval_every == 0 || state.step + 1 == o.steps);
    if (eval_now && !data.validation.tokens.empty()) {
      const EvalResult v = evaluate(model, data.validation, o.seq_len, o.eval_batches);
      last_val = v.loss;
      line["val_loss"] = v.loss;
      line["val_ppl"] = v.perplexity();
      line["val_bpb"] = v.bits_per_byte();
    }
    log << line.dump() << "\n";
    log.flush();
    if (tty) {
      const double done = static_cast<double>(state.step + 1 - first_step);
      const double eta = elapsed / done * (o.steps - state.step - 1);
      std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f  %s%.0f tok/s  ETA %.0f s   ", (long long)state.step + 1,
                   (long long)o.steps, r.loss,
                   std::isnan(last_val) ? "" : ("val " + std::to_string(last_val).substr(0, 6) + "  ").c_str(),
                   batch.batch * batch.seq_len / step_seconds, eta);
    }
    if (o.checkpoint_every > 0 && (state.step + 1) % o.checkpoint_every == 0 && state.step + 1 < o.steps) {
      ++state.step;  // a checkpoint records the next step to run
      checkpoint();
      --state.step;
    }
  }
  if (tty) std::fprintf(stderr, "\n");
  checkpoint();
  save_model_dir(tw, o.out_dir, o.save_bf16);
  if (!o.tokenizer_dir.empty())
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path src = fs::path(o.tokenizer_dir) / f;
      if (fs::exists(src)) write_file_atomically((fs::path(o.out_dir) / f).string(), read_text_file(src.string()));
    }
  return last_val;
}

}  // namespace dsv2
