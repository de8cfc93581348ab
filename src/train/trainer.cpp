#include "train/trainer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "dist/runtime.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoints.h"
#include "train/training_model.h"
#include "train/weights_io.h"
#include "train/zero.h"

namespace dsv2 {

namespace fs = std::filesystem;

double EvalResult::perplexity() const { return std::exp(loss); }
double EvalResult::bits_per_byte() const { return bytes > 0 ? loss * tokens / std::log(2.0) / bytes : 0.0; }

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

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

// Every rank evaluates its share of each batch; the result is over all of them.
EvalResult evaluate(TrainingModel& model, const TokenStream& stream, int64_t seq_len, int64_t max_batches,
                    const dist::Communicator& all) {
  EvalResult r;
  double nats = 0.0;
  int64_t eval_tokens_total = static_cast<int64_t>(stream.tokens.size()) - 1;
  for (const Batch& b : evaluation_batches(stream, seq_len, 8, max_batches)) {
    const StepResult s = model.run(share_of(b, all.rank(), all.size()), false, false);
    nats += s.loss * s.targets;
    r.tokens += s.targets;
  }
  r.loss = r.tokens ? nats / r.tokens : 0.0;
  // Bytes in proportion to the tokens evaluated (exact when the whole stream is used).
  r.bytes = eval_tokens_total > 0 ? static_cast<int64_t>(static_cast<double>(stream.bytes) * r.tokens / eval_tokens_total) : 0;
  return r;
}

// The mean loss over the counted targets of fixed batches (every rank its share).
double evaluate(TrainingModel& model, const std::vector<Batch>& batches, const dist::Communicator& all) {
  double nats = 0.0;
  int64_t targets = 0;
  for (const Batch& b : batches) {
    const StepResult s = model.run(share_of(b, all.rank(), all.size()), false, false);
    nats += s.loss * s.targets;
    targets += s.targets;
  }
  return targets ? nats / targets : 0.0;
}

// Checkpoints and the metrics log only work if every rank sees the files rank
// 0 writes: check that --out is one directory for all of them.
void check_shared_directory(const std::string& out, const dist::Communicator& all) {
  const fs::path marker = fs::path(out) / ".dsv2-ranks";
  std::string nonce = std::to_string(std::random_device{}()) + "-" + std::to_string(::getpid());
  dist::run_on_all_ranks(all, [&] {
    if (all.is_root()) write_file_atomically(marker.string(), nonce);
  });
  all.broadcast(nonce, 0);
  dist::run_on_all_ranks(all, [&] {
    if (!fs::exists(marker) || read_text_file(marker.string()) != nonce)
      throw Error("--out " + out + " is not the directory rank 0 writes to: it must be on a filesystem all ranks share");
  });
  if (all.is_root()) fs::remove(marker);
}

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// What each rank reports into rank 0's metrics line.
struct RankReport {
  int64_t alltoall_bytes, allreduce_bytes, peak_rss_bytes;
};

}  // namespace

double train(const Config& config, const TokenData& data, const TrainerOptions& o) {
  const dist::ParallelLayout layout = dist::ParallelLayout::make(dist::Communicator::single(), 1, config.n_routed_experts);
  return train(config, data, o, layout);
}

double train(const Config& config, const TokenData& data, const TrainerOptions& o, const dist::ParallelLayout& layout) {
  require(o.steps > 0 && o.seq_len > 1 && o.batch_tokens >= o.seq_len, "train: need steps > 0 and batch_tokens >= seq_len > 1");
  const dist::Communicator& all = layout.world;
  const bool root = all.is_root();
  dist::run_on_all_ranks(all, [&] {
    if (root) fs::create_directories(o.out_dir);
  });
  if (all.size() > 1) check_shared_directory(o.out_dir, all);
  TrainWeights tw(config, layout.placement);
  if (o.freeze_model) tw.freeze_all_but_mtp();
  const ZeroPartition zero(tw, layout);
  AdamW adam(tw, o.adam, zero.owned());
  TrainingModel model(tw, o.moe, &layout);
  model.set_freeze_model(o.freeze_model);
  BatchSampler own_sampler(data.train, o.seed, o.never_drop_share, o.passkey_share, o.passkey ? &*o.passkey : nullptr);
  BatchSource& sampler = o.batches ? *o.batches : own_sampler;
  const std::string option_record = nlohmann::json({{"steps", o.steps}, {"seq_len", o.seq_len}, {"batch_tokens", o.batch_tokens},
                                                    {"lr", o.lr.peak}, {"seed", o.seed},
                                                    {"freeze_model", o.freeze_model}}).dump();
  TrainingState state;
  const std::string log_path = (fs::path(o.out_dir) / "metrics.jsonl").string();
  if (o.resume && fs::exists(fs::path(o.out_dir) / "latest")) {
    dist::run_on_all_ranks(all, [&] {
      state = load_checkpoint(o.out_dir, tw, adam, layout);
      sampler.set_state(state.sampler);
      if (root) truncate_log(log_path, state.step);
    });
  } else {
    tw.init(o.init_std, o.seed);
    if (!o.init_from.empty())  // continued training (e.g. a context extension): the weights of a trained model, a fresh optimizer
      dist::run_on_all_ranks(all, [&] { load_train_weights(tw, o.init_from); });
    if (root) std::ofstream(log_path, std::ios::trunc).close();
  }
  std::ofstream log;
  if (root) log.open(log_path, std::ios::app);
  const bool tty = root && ::isatty(STDERR_FILENO);
  const auto start = Clock::now();
  const int64_t first_step = state.step;
  double last_val = NAN;

  auto checkpoint = [&] {
    state.sampler = sampler.state();
    save_checkpoint(o.out_dir, tw, adam, state, option_record, layout, o.tokenizer_dir);
  };
  const int64_t full = std::max<int64_t>(1, o.batch_tokens / o.seq_len);
  auto sequences_at = [&](int64_t step) { return std::max<int64_t>(1, std::llround(full * o.ramp.share(step))); };
  int64_t planned_tokens = 0;  // the whole run's tokens, for the step schedule's decay points
  for (int64_t s = 0; s < o.steps; ++s) planned_tokens += sequences_at(s) * o.seq_len;
  for (; state.step < o.steps; ++state.step) {
    const auto step_start = Clock::now();
    const dist::Traffic traffic_before = dist::traffic();
    // Every rank draws the whole batch (the same sequences one process would
    // train on) and keeps its share.
    const Batch batch = share_of(sampler.next(sequences_at(state.step), o.seq_len), all.rank(), all.size());
    tw.zero_grads();
    const double mtp_lambda = o.mtp_lambda.at(static_cast<double>(state.tokens) / static_cast<double>(planned_tokens));
    model.set_mtp_lambda(mtp_lambda);
    const StepResult r = o.objective ? o.objective->step(model, tw, batch) : model.run(batch, true, true);
    const auto optimizer_start = Clock::now();
    zero.reduce_gradients(tw);
    const double grad_norm = clip_grad_norm(tw, o.clip, zero.owned(), &all);
    const double lr = o.lr.at(state.step, o.steps, static_cast<double>(state.tokens) / static_cast<double>(planned_tokens));
    adam.step(tw, lr);
    zero.gather_parameters(tw);
    const double optimizer_seconds = seconds_since(optimizer_start);
    // V3's aux-loss-free balancing: b_i += γ·sign(mean load − load_i), for selection only
    // (the loads are the whole batch's, so every rank moves its copy the same way).
    if (o.moe.bias_update_speed > 0.0 && config.topk_method == "noaux_tc") {
      std::vector<const LayerWeights*> moe_layers;  // in StepResult::selected's order: the model's, then the MTP blocks'
      for (const LayerWeights& layer : tw.w().layers)
        if (layer.is_moe) moe_layers.push_back(o.freeze_model ? nullptr : &layer);
      for (const MtpLayerWeights& module : tw.w().mtp)
        if (module.block.is_moe) moe_layers.push_back(&module.block);
      for (size_t moe_index = 0; moe_index < moe_layers.size(); ++moe_index) {
        if (!moe_layers[moe_index]) continue;  // frozen
        float* bias = mut(moe_layers[moe_index]->moe.e_score_correction_bias);
        const auto& load = r.selected[moe_index];
        double mean = 0.0;
        for (int64_t x : load) mean += static_cast<double>(x) / load.size();
        for (size_t e = 0; e < load.size(); ++e)
          bias[e] += static_cast<float>(o.moe.bias_update_speed * ((mean > load[e]) - (mean < load[e])));
      }
    }
    const int64_t step_tokens = batch.global_sequences * batch.seq_len;
    state.tokens += step_tokens;
    const dist::Traffic& now = dist::traffic();
    const auto reports = all.all_gather_value<RankReport>({now.all_to_all - traffic_before.all_to_all,
                                                           now.collective - traffic_before.collective, peak_rss_bytes()});
    const double step_seconds = seconds_since(step_start);
    const double elapsed = seconds_since(start);
    nlohmann::ordered_json line = {{"step", state.step}, {"loss", r.loss}, {"balance_loss", r.balance_loss},
                                   {"expert_balance", r.expert_loss}, {"device_balance", r.device_loss},
                                   {"comm_balance", r.comm_loss}, {"sequence_balance", r.sequence_loss},
                                   {"max_violation", r.max_violation}, {"dropped_share", r.dropped_share},
                                   {"lr", lr}, {"grad_norm", grad_norm}, {"batch_tokens", step_tokens},
                                   {"tokens", state.tokens}, {"tokens_per_s", step_tokens / step_seconds},
                                   {"seconds", {{"step", step_seconds},
                                                {"attention_forward", r.seconds.attention_forward},
                                                {"attention_backward", r.seconds.attention_backward},
                                                {"ffn_forward", r.seconds.ffn_forward},
                                                {"ffn_backward", r.seconds.ffn_backward},
                                                {"lm_head", r.seconds.lm_head},
                                                {"optimizer", optimizer_seconds}}}};
    int64_t alltoall = 0, allreduce = 0;
    nlohmann::json rss = nlohmann::json::array();
    for (const RankReport& report : reports) {
      alltoall += report.alltoall_bytes, allreduce += report.allreduce_bytes;
      rss.push_back(report.peak_rss_bytes);
    }
    if (config.num_nextn_predict_layers > 0) {
      line["mtp_loss"] = r.mtp_loss;
      line["mtp_lambda"] = mtp_lambda;
    }
    if (o.objective) o.objective->add_metrics(line);
    line["ranks"] = all.size();
    line["alltoall_bytes"] = alltoall;
    line["allreduce_bytes"] = allreduce;
    line["rank_peak_rss_bytes"] = rss;
    const bool eval_now = o.eval_every > 0 && ((state.step + 1) % o.eval_every == 0 || state.step + 1 == o.steps);
    // Windows of seq_len tokens, or as long as the held-out text allows (a long-context run
    // may hold out less than one window).
    const int64_t eval_len = std::min<int64_t>(o.seq_len, static_cast<int64_t>(data.validation.tokens.size()) - 1);
    if (eval_now && o.validation_batches) {
      last_val = evaluate(model, *o.validation_batches, all);
      line["val_loss"] = last_val;
      line["val_ppl"] = std::exp(last_val);
    } else if (eval_now && eval_len >= 2) {
      const EvalResult v = evaluate(model, data.validation, eval_len, o.eval_batches, all);
      last_val = v.loss;
      line["val_loss"] = v.loss;
      line["val_ppl"] = v.perplexity();
      line["val_bpb"] = v.bits_per_byte();
    }
    if (root) {
      log << line.dump() << "\n";
      log.flush();
    }
    if (tty) {
      const double done = static_cast<double>(state.step + 1 - first_step);
      const double eta = elapsed / done * (o.steps - state.step - 1);
      std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f  %s%.0f tok/s  ETA %.0f s   ", (long long)state.step + 1,
                   (long long)o.steps, r.loss,
                   std::isnan(last_val) ? "" : ("val " + std::to_string(last_val).substr(0, 6) + "  ").c_str(),
                   step_tokens / step_seconds, eta);
    }
    if (o.checkpoint_every > 0 && (state.step + 1) % o.checkpoint_every == 0 && state.step + 1 < o.steps) {
      ++state.step;  // a checkpoint records the next step to run
      checkpoint();
      --state.step;
    }
  }
  if (tty) std::fprintf(stderr, "\n");
  checkpoint();
  save_whole_model(tw, layout, o.out_dir, o.save_bf16);
  dist::run_on_all_ranks(all, [&] {
    if (root && !o.tokenizer_dir.empty()) Tokenizer::copy_files(o.tokenizer_dir, o.out_dir);
  });
  return last_val;
}

}  // namespace dsv2
