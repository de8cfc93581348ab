// The dsv2 subcommands. Each takes the arguments after its name and returns the
// process exit code; errors are thrown and reported once by main().
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/args.h"
#include "core/dtype.h"
#include "model/latent_cache.h"
#include "model/mla.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace dsv2::cli {

int run_info(int argc, char** argv);
int run_logits(int argc, char** argv);
int run_generate(int argc, char** argv);
int run_tokenize(int argc, char** argv);
int run_detokenize(int argc, char** argv);
int run_tokenizer(int argc, char** argv);
int run_train(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_pretokenize(int argc, char** argv);
int run_chat(int argc, char** argv);
int run_quantize(int argc, char** argv);
int run_serve(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_init(int argc, char** argv);
int run_niah(int argc, char** argv);
int run_sft(int argc, char** argv);
int run_rm(int argc, char** argv);
int run_rm_score(int argc, char** argv);
int run_grpo(int argc, char** argv);

// Options several commands share, spelled once.
inline const OptionSpec kModelOption{"model", 'm', true, "DIR       Hugging Face model directory"};
inline const OptionSpec kAttnOption{"attn", 0, true, "PATH      MLA form: auto (default: per call, the one with fewer multiply-adds), absorbed or naive"};
inline const OptionSpec kThreadsOption{"threads", 't', true, "N         worker threads (default: all cores)"};
inline const OptionSpec kQuantizeOption{"quantize", 0, true,
                                        "TYPE      re-encode the weights at load time: bf16, q8, q4 or fp8 (as dsv2 quantize)"};
inline const OptionSpec kActivationTermsOption{
    "activation-terms", 0, true,
    "N         q8/q4 weights: a prompt's products by the integer GEMM with N int8 terms per activation: 2 (logits as "
    "close to bf16 as float32 activations keep them) or 1 (as llama.cpp: half the integer work). Without it, where "
    "the CPU has AVX512-BF16, the weights are widened to bf16 for those products (as close as 2, faster)"};
inline const OptionSpec kRepackOption{
    "repack", 0, false,
    "          repack the weights' rows at load into the prompt products' panels (as ik_llama.cpp's -rtr): faster "
    "prefill, the same prompt logits; bf16 panels replace the rows (no memory added), q8/q4/fp8 ones take as much "
    "memory again"};
inline const OptionSpec kCacheTypeOption{"cache-type", 0, true,
                                         "TYPE      latent cache storage: f32 (default), q8 (9 bits/value) or q4 (about 6)"};
inline const OptionSpec kExpertParallelOption{
    "expert-parallel", 0, true,
    "N         under mpirun -np N: split the model over the N ranks (routed experts by expert, the rest by rows); N is the default and the only value"};

inline const OptionSpec kSpeculativeOption{"speculative", 0, true,
                                          "KIND      speculative decoding: mtp (the model's MTP layer drafts, the model "
                                          "verifies)"};
inline const OptionSpec kDraftOption{"draft", 0, true, "N         with --speculative: tokens drafted per step (default 1)"};
// Option lists joined in order: a command's own options, then shared groups.
inline std::vector<OptionSpec> join_options(std::vector<std::vector<OptionSpec>> groups) {
  std::vector<OptionSpec> all;
  for (auto& group : groups) all.insert(all.end(), group.begin(), group.end());
  return all;
}

// Shared option helpers.
// -m DIR, else $DSV2_MODEL, else the model shipped in the source tree (models/dsv2-mini).
std::string model_dir_option(const Args& args);
// The sampling flags (--temperature ... --logit-bias, --seed), their help showing `defaults`.
std::vector<OptionSpec> sampling_option_specs(const SamplingOptions& defaults);
// Reads those flags over `defaults`; a value out of range is a UsageError naming the flag.
SamplingOptions parse_sampling(const Args& args, const SamplingOptions& defaults);
// --logit-bias token ids against the model's vocabulary, known once the model is loaded.
void check_sampling_vocabulary(const SamplingOptions& options, int64_t vocab_size);
AttentionPath parse_attention_path(const std::string& value);
// --speculative mtp given (any other value is a UsageError), and --draft N (1..16, default 1).
bool speculative_option(const Args& args);
int64_t draft_option(const Args& args);
// Sampling options speculative decoding cannot keep exact (the penalties) are a UsageError naming the flag.
void check_speculative_sampling(const SamplingOptions& sampling);
// --quantize TYPE, if given.
std::optional<DType> quantize_option(const Args& args);
// --activation-terms 1|2, if given: q8/q4 prompts take the integer GEMM with that many terms, for the whole
// process (use_gemm_q8_for_prompts, set_gemm_q8_activation_terms).
void apply_activation_terms_option(const Args& args);
// --repack: the model's prompt matrices repacked (Model::repack_for_prompts).
void apply_repack_option(const Args& args, Model& model);
// --cache-type f32|q8|q4 (default f32).
CacheType cache_type_option(const Args& args);
// bf16 | f32 | q8 | q4 -> the stored dtype (q8: I8, q4: U8); errors name --option.
DType parse_weight_type(const std::string& option, const std::string& type);
void apply_thread_option(const Args& args);
// The tokenizer named by --tokenizer, or the one in -m DIR.
std::unique_ptr<Tokenizer> load_tokenizer_option(const Args& args);
// The prompt as ids: --ids, or --prompt TEXT encoded with the model's tokenizer.
std::vector<int32_t> prompt_ids(const Args& args, const Tokenizer* tokenizer);

// dsv2 eval --task FILE.jsonl... [--limit N] [--json]: multiple-choice accuracy (cmd_eval_task.cpp).
void eval_tasks(const Args& args, Model& model, const Tokenizer& tokenizer, CacheType cache_type);
// dsv2 eval --answers FILE.jsonl... [--reward NAME | --reward-cmd CMD] [--max-new-tokens N] [--samples G
// --temperature T] [--limit N] [--completions FILE] [--json]: accuracy on checkable answers (cmd_eval_answers.cpp).
void eval_answers(const Args& args, Model& model, const Tokenizer& tokenizer, const std::string& model_dir);

// Runs a command's set-up (options, data, model) on every rank of an mpirun
// job and agrees on errors: one that any rank meets is reported once by rank 0
// and every rank exits (dist::run_on_all_ranks). In one process it just runs.
void set_up_on_all_ranks(const std::function<void()>& setup);
// Every rank of a training job must run the same command on the same data
// (`data_fingerprint`, a hash of what it read); rank 0 names the first difference.
void check_ranks_agree(int argc, char** argv, uint64_t data_fingerprint);
// The model of an inference command (-m, --quantize, --expert-parallel): whole
// in one process; under mpirun, this rank's share of it. Rank 0 then runs the
// command; the other ranks call Model::follow().
std::unique_ptr<Model> load_model(const Args& args, const std::string& dir);

}  // namespace dsv2::cli
