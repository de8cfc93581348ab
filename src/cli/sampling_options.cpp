// The sampling flags `dsv2 generate` and `dsv2 chat` share: one list, so the
// two commands spell and check them alike and their --help shows each
// command's own defaults. The ranges are the sampler's (find_sampling_problem).
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"

namespace dsv2::cli {

namespace {

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

// A problem found by the sampler's checks, as a usage error naming the flag (top_p -> --top-p).
void throw_if_problem(const SamplingOptions& options, int64_t vocab_size) {
  const auto problem = find_sampling_problem(options, vocab_size);
  if (!problem) return;
  std::string flag = problem->field;
  std::replace(flag.begin(), flag.end(), '_', '-');
  throw UsageError("option --" + flag + ": " + problem->message);
}

// "ID=BIAS[,ID=BIAS...]" appended to `biases`.
void parse_logit_bias(const std::string& value, std::vector<LogitBias>& biases) {
  size_t start = 0;
  while (start <= value.size()) {
    const size_t end = std::min(value.find(',', start), value.size());
    const std::string item = value.substr(start, end - start);
    const size_t eq = item.find('=');
    const std::string id = item.substr(0, eq), bias = eq == std::string::npos ? "" : item.substr(eq + 1);
    char* id_end = nullptr;
    char* bias_end = nullptr;
    errno = 0;
    const long long token = std::strtoll(id.c_str(), &id_end, 10);
    const double b = std::strtod(bias.c_str(), &bias_end);
    const bool ok = !id.empty() && !bias.empty() && *id_end == '\0' && *bias_end == '\0' && errno != ERANGE &&
                    token >= 0 && token <= INT32_MAX;
    if (!ok) throw UsageError("option --logit-bias: '" + item + "' is not TOKEN_ID=BIAS (e.g. 123=-100)");
    biases.push_back({static_cast<int32_t>(token), static_cast<float>(b)});
    start = end + 1;
  }
}

}  // namespace

std::vector<OptionSpec> sampling_option_specs(const SamplingOptions& d) {
  return {
      {"temperature", 0, true, "T         sampling temperature, 0 = greedy (default " + number(d.temperature) + ")"},
      {"top-k", 0, true, "K         sample among the K most likely tokens, 0 = all (default " + number(d.top_k) + ")"},
      {"top-p", 0, true, "P         nucleus sampling: the most likely tokens up to probability P, 1 = off (default " +
                             number(d.top_p) + ")"},
      {"min-p", 0, true, "P         drop tokens less likely than P x the most likely one, 0 = off (default " +
                             number(d.min_p) + ")"},
      {"repeat-penalty", 0, true, "R         divide the logit of a token among the last --repeat-last-n by R (multiply "
                                  "a negative one), 1 = off (default " + number(d.repeat_penalty) + ")"},
      {"repeat-last-n", 0, true, "N         context tokens the repeat penalty looks back over, 0 = none, -1 = all "
                                 "(default " + number(static_cast<double>(d.repeat_last_n)) + ")"},
      {"frequency-penalty", 0, true, "F         -2..2: subtract F x (times generated) from a token's logit (default " +
                                         number(d.frequency_penalty) + ")"},
      {"presence-penalty", 0, true, "P         -2..2: subtract P from the logit of every token generated already "
                                    "(default " + number(d.presence_penalty) + ")"},
      {"logit-bias", 0, true,
       "ID=B,...  add B (-100..100) to token ID's logit: -100 bans it, 100 forces it; repeatable"},
      {"seed", 0, true, "S         random seed (default " + number(static_cast<double>(d.seed)) + ")"},
  };
}

SamplingOptions parse_sampling(const Args& args, const SamplingOptions& defaults) {
  SamplingOptions s = defaults;
  s.temperature = static_cast<float>(args.get_double("temperature", defaults.temperature));
  s.top_k = args.get_int("top-k", defaults.top_k);
  s.top_p = static_cast<float>(args.get_double("top-p", defaults.top_p));
  s.min_p = static_cast<float>(args.get_double("min-p", defaults.min_p));
  s.repeat_penalty = static_cast<float>(args.get_double("repeat-penalty", defaults.repeat_penalty));
  s.repeat_last_n = args.get_int("repeat-last-n", defaults.repeat_last_n);
  s.frequency_penalty = static_cast<float>(args.get_double("frequency-penalty", defaults.frequency_penalty));
  s.presence_penalty = static_cast<float>(args.get_double("presence-penalty", defaults.presence_penalty));
  for (const std::string& value : args.get_all("logit-bias")) parse_logit_bias(value, s.logit_bias);
  const long long seed = args.get_int("seed", static_cast<long long>(defaults.seed));
  if (seed < 0) throw UsageError("option --seed: must not be negative");
  s.seed = static_cast<uint64_t>(seed);
  throw_if_problem(s, 0);
  return s;
}

void check_sampling_vocabulary(const SamplingOptions& options, int64_t vocab_size) {
  throw_if_problem(options, vocab_size);
}

}  // namespace dsv2::cli
