// dsv2 grpo: reinforcement learning with GRPO (DeepSeekMath; DeepSeek-V2 §4)
// from a fine-tuned model, rewards from a built-in verifier or an external
// command (train/rewards.h), the loop in train/grpo_trainer.h. docs/ALIGNMENT.md.
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "runtime/chat_template.h"
#include "runtime/reward_model.h"
#include "train/grpo_trainer.h"

namespace dsv2::cli {

int run_grpo(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 grpo -m SFT --prompts FILE.jsonl --out DIR (--reward NAME | --reward-cmd CMD | --reward-model DIR) [--group G] [--steps N] "
            "[--lr X] [--kl-beta B] [--clip-eps E] [--max-new-tokens N] [--temperature T]\n\n"
            "Trains SFT with GRPO: per prompt G completions are sampled from the policy, scored, and the policy "
            "maximises the clipped-ratio objective with advantages (r - mean)/std within the group and a KL penalty "
            "to the frozen SFT model. Prompt lines: {\"prompt\": \"raw text\"} or {\"messages\": [...]} (the chat "
            "template), plus other fields (e.g. \"answer\") the rewards read.",
            {kModelOption,
             {"prompts", 0, true, "FILE      prompts, JSON Lines"},
             {"out", 'o', true, "DIR       output: the trained model and metrics.jsonl"},
             {"reward", 0, true, "NAME      built-in reward: exact-answer (the \"answer\" field) or format"},
             {"reward-cmd", 0, true, "CMD       external reward: run through /bin/sh, JSON lines in, one number per line out"},
             {"reward-model", 0, true, "DIR       a reward model (dsv2 rm) from the same SFT model: its score of prompt + completion"},
             {"group", 'G', true, "G         completions per prompt (default 8)"},
             {"steps", 0, true, "N         steps (default 100)"},
             {"prompts-per-step", 0, true, "N         prompts per step (default 1)"},
             {"iterations", 0, true, "N         updates per batch of samples, μ (default 1)"},
             {"lr", 0, true, "X         learning rate, constant (default 1e-6, DeepSeekMath's)"},
             {"kl-beta", 0, true, "B         weight of the KL penalty to the SFT model (default 0.04)"},
             {"clip-eps", 0, true, "E         ratio clip ε (default 0.2)"},
             {"max-new-tokens", 0, true, "N         tokens per completion at most (default 256)"},
             {"temperature", 0, true, "T         sampling temperature (default 1.0)"},
             {"seed", 0, true, "N         seed for the prompt order and the sampling (default 1)"},
             {"save-every", 0, true, "N         also write the model into --out every N steps"},
             {"save-bf16", 0, false, "          write model.safetensors in bfloat16"},
             kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  apply_thread_option(args);
  GrpoOptions o;
  o.model_dir = model_dir_option(args);
  const std::string prompts_file = args.require("prompts");
  o.out_dir = args.require("out");
  o.group = args.get_int("group", 8);
  o.steps = args.get_int("steps", 100);
  o.prompts_per_step = args.get_int("prompts-per-step", 1);
  o.iterations = args.get_int("iterations", 1);
  o.lr = args.get_double("lr", 1e-6);
  o.objective.beta = args.get_double("kl-beta", 0.04);
  o.objective.clip_eps = args.get_double("clip-eps", 0.2);
  o.max_new_tokens = args.get_int("max-new-tokens", 256);
  o.temperature = static_cast<float>(args.get_double("temperature", 1.0));
  o.seed = static_cast<uint64_t>(args.get_int("seed", 1));
  o.save_every = args.get_int("save-every", 0);
  o.save_bf16 = args.has("save-bf16");
  if (o.group < 2) throw UsageError("option --group: at least 2 (advantages compare completions of a prompt)");
  if (o.steps < 1 || o.prompts_per_step < 1 || o.iterations < 1 || o.max_new_tokens < 1)
    throw UsageError("--steps, --prompts-per-step, --iterations and --max-new-tokens must be at least 1");
  if (!(o.lr > 0)) throw UsageError("option --lr: must be positive");
  if (!(o.objective.beta >= 0)) throw UsageError("option --kl-beta: must be at least 0");
  if (!(o.objective.clip_eps > 0 && o.objective.clip_eps < 1)) throw UsageError("option --clip-eps: must be in (0, 1)");
  if (!(o.temperature > 0)) throw UsageError("option --temperature: must be positive (the objective needs sampled completions)");
  if (args.has("reward") + args.has("reward-cmd") + args.has("reward-model") != 1)
    throw UsageError("give one of --reward NAME, --reward-cmd CMD and --reward-model DIR");
  std::unique_ptr<Reward> reward;
  try {
    if (!args.has("reward-model"))
      reward = args.has("reward") ? make_builtin_reward(args.get("reward", "")) : make_command_reward(args.get("reward-cmd", ""));
  } catch (const Error& e) {
    throw UsageError(e.what());
  }

  const Config config = load_config(o.model_dir);
  if (args.has("reward-model")) {
    const std::string rm_dir = args.get("reward-model", "");
    if (load_config(rm_dir).vocab_size != config.vocab_size)
      throw Error(rm_dir + ": the reward model's vocabulary is not the policy's (it reads the policy's token ids)");
    reward = make_model_reward(rm_dir);
  }
  if (!Tokenizer::exists_in(o.model_dir)) throw Error(o.model_dir + ": no tokenizer.json in the model directory");
  const auto tokenizer = Tokenizer::load(o.model_dir);
  const ChatRenderer render = make_chat_renderer(*tokenizer, o.model_dir + "/tokenizer_config.json");
  // Every prompt is read and checked before anything is written to --out.
  const std::vector<RlPrompt> prompts = load_rl_prompts(prompts_file, *tokenizer, render, config.max_position_embeddings,
                                                        o.max_new_tokens, reward->required_field());
  std::fprintf(stderr, "%zu prompts, %lld steps of %lld prompts x %lld completions\n", prompts.size(),
               static_cast<long long>(o.steps), static_cast<long long>(o.prompts_per_step), static_cast<long long>(o.group));
  run_grpo(o, prompts, *tokenizer, *reward);
  std::printf("GRPO-trained model written to %s\n", o.out_dir.c_str());
  return 0;
}

}  // namespace dsv2::cli
