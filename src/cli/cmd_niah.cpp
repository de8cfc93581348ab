// dsv2 niah: needle-in-a-haystack retrieval over context lengths and needle
// depths (runtime/niah.h), as a table, JSON lines and a heatmap PNG.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/png.h"
#include "runtime/heatmap.h"
#include "runtime/niah.h"
#include "train/data.h"

namespace dsv2::cli {

namespace {

// "1K,2K,4096" -> {1024, 2048, 4096}.
std::vector<int64_t> parse_lengths(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    int64_t scale = 1;
    if (!item.empty() && (item.back() == 'K' || item.back() == 'k')) scale = 1024, item.pop_back();
    try {
      size_t used = 0;
      const long long n = std::stoll(item, &used);
      if (used != item.size() || n < 1 || n > (1 << 22)) throw std::invalid_argument(item);
      out.push_back(n * scale);
    } catch (const std::logic_error&) {
      throw UsageError("option --lengths: '" + text + "' is not a list of token counts such as 1K,2K,4096");
    }
  }
  if (out.empty()) throw UsageError("option --lengths: no lengths");
  return out;
}

std::vector<int> parse_depths(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      size_t used = 0;
      const int d = std::stoi(item, &used);
      if (used != item.size() || d < 0 || d > 100) throw std::invalid_argument(item);
      out.push_back(d);
    } catch (const std::logic_error&) {
      throw UsageError("option --depths: '" + text + "' is not a list of percentages 0..100");
    }
  }
  if (out.empty()) throw UsageError("option --depths: no depths");
  return out;
}

std::string length_label(int64_t n) { return n % 1024 == 0 ? std::to_string(n / 1024) + "K" : std::to_string(n); }

}  // namespace

int run_niah(int argc, char** argv) {
  Args args(argc, argv,
            "dsv2 niah [-m DIR] --haystack FILE... [--held-out X] [--lengths 1K,2K,...] [--depths 0,25,...] [--trials N] "
            "[--lang en|zh] [--json] [--plot FILE.png]\n\n"
            "Hides \"The secret number is NNNNN.\" (or 秘密数字是NNNNN。) at each depth of a haystack of the given\n"
            "text (by default only its held-out tail, the split dsv2 train never trains on), prompts the model\n"
            "with \"The secret number is\" at the end and scores the greedy completion by exact match.",
            {kModelOption,
             {"haystack", 0, true, "FILE      text to build haystacks from (repeatable; files may also follow the options)"},
             {"held-out", 0, true, "X         use the last X of each file, as dsv2 train --validation-share X holds it out (default 0.02; 0: all)"},
             {"lengths", 0, true, "LIST      context lengths in tokens (default 1K,2K,4K,8K,16K)"},
             {"depths", 0, true, "LIST      needle depths in percent of the haystack (default 0,25,50,75,100)"},
             {"trials", 0, true, "N         needles per cell, each a new number and stretch of text (default 3)"},
             {"lang", 0, true, "LANG      needle language: en (default) or zh; use a haystack of the same language"},
             {"seed", 0, true, "S         seed of the numbers and text offsets (default 1)"},
             {"json", 0, false, "          one JSON object per cell (with each miss: the number and the completion), then a summary"},
             {"plot", 0, true, "FILE      write the heatmap as a PNG"},
             kCacheTypeOption, kQuantizeOption, kActivationTermsOption, kRepackOption, kExpertParallelOption, kThreadsOption});
  if (args.print_help_if_requested()) return 0;
  NiahOptions o;
  std::string dir, haystack;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;
  set_up_on_all_ranks([&] {
    apply_thread_option(args);
    dir = model_dir_option(args);
    o.lengths = parse_lengths(args.get("lengths", "1K,2K,4K,8K,16K"));
    o.depths = parse_depths(args.get("depths", "0,25,50,75,100"));
    o.trials = static_cast<int>(args.get_int("trials", 3));
    if (o.trials < 1 || o.trials > 1000) throw UsageError("option --trials: must be between 1 and 1000");
    o.language = args.get("lang", "en");
    if (o.language != "en" && o.language != "zh") throw UsageError("option --lang: en or zh");
    o.seed = static_cast<uint64_t>(args.get_int("seed", 1));
    o.cache_type = cache_type_option(args);
    const double held_out = args.get_double("held-out", 0.02);
    if (!(held_out >= 0.0 && held_out < 1.0)) throw UsageError("option --held-out: must be in [0, 1)");
    std::vector<std::string> files = args.get_all("haystack");
    for (const auto& p : args.positional()) files.push_back(p);
    if (files.empty()) throw UsageError("no haystack text: give --haystack FILE...");
    for (const auto& file : files) {
      const std::string text = read_text_file(file);
      haystack += text.substr(held_out > 0.0 ? validation_cut(text, held_out) : 0) + "\n";
    }
    if (!Tokenizer::exists_in(dir)) throw Error(dir + ": niah needs tokenizer.json in the model directory");
    tokenizer = Tokenizer::load(dir);
    model = load_model(args, dir);
  });
  if (model->is_follower()) return model->follow(), 0;
  const int64_t context = model->config().max_position_embeddings;
  for (int64_t length : o.lengths)
    if (length > context)
      std::fprintf(stderr, "dsv2 niah: note: length %lld is past the model's max_position_embeddings (%lld)\n",
                   static_cast<long long>(length), static_cast<long long>(context));
  const bool tty = ::isatty(STDERR_FILENO);
  size_t done = 0;
  const size_t total = o.lengths.size() * o.depths.size();
  const std::vector<NiahCell> cells = run_niah(*model, *tokenizer, haystack, o, [&](const NiahCell& cell) {
    ++done;
    if (args.has("json")) {
      nlohmann::json misses = nlohmann::json::array();
      for (const auto& [expected, written] : cell.misses) misses.push_back({{"expected", expected}, {"completion", written}});
      std::printf("%s\n", nlohmann::json({{"length", cell.length}, {"depth", cell.depth}, {"trials", cell.trials},
                                          {"correct", cell.correct}, {"accuracy", cell.accuracy()},
                                          {"prompt_tokens", cell.prompt_tokens}, {"misses", misses}})
                              .dump()
                              .c_str());
    }
    if (tty) std::fprintf(stderr, "\rniah: %zu/%zu cells", done, total);
  });
  if (tty) std::fprintf(stderr, "\n");

  int correct = 0, trials = 0;
  for (const NiahCell& c : cells) correct += c.correct, trials += c.trials;
  Heatmap map{"Needle in a haystack: " + std::filesystem::path(dir).lexically_normal().filename().string(),
              "Context length (tokens)", "Depth", {}, {}, {}};
  for (int64_t length : o.lengths) map.columns.push_back(length_label(length));
  for (int depth : o.depths) map.rows.push_back(std::to_string(depth) + "%");
  map.values.assign(map.rows.size() * map.columns.size(), NAN);
  for (size_t i = 0; i < cells.size(); ++i) map.values[(i % o.depths.size()) * o.lengths.size() + i / o.depths.size()] = cells[i].accuracy();
  if (args.has("json")) {
    std::printf("%s\n", nlohmann::json({{"accuracy", trials ? double(correct) / trials : 0.0}, {"correct", correct}, {"trials", trials}}).dump().c_str());
  } else {
    std::printf("%-8s", "depth");
    for (const std::string& c : map.columns) std::printf("%7s", c.c_str());
    std::printf("\n");
    for (size_t r = 0; r < map.rows.size(); ++r) {
      std::printf("%-8s", map.rows[r].c_str());
      for (size_t c = 0; c < map.columns.size(); ++c) std::printf("%6.0f%%", 100.0 * map.values[r * map.columns.size() + c]);
      std::printf("\n");
    }
    std::printf("retrieved %d of %d needles (%.1f%%)\n", correct, trials, trials ? 100.0 * correct / trials : 0.0);
  }
  if (args.has("plot")) write_png(args.get("plot"), render_heatmap(map));
  return 0;
}

}  // namespace dsv2::cli
