// Tokenizer throughput: encode MB/s on one thread (median of --runs), and the
// time to train a byte-level BPE vocabulary.
//   bench_tokenizer encode TOKENIZER_DIR FILE... [--runs N]
//   bench_tokenizer train VOCAB_SIZE FILE...
// Prints one JSON line; bench/tokenizer.sh puts it beside Hugging Face's numbers.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "io/checkpoint.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: bench_tokenizer encode DIR FILE... [--runs N] | train VOCAB FILE...\n");
    return 2;
  }
  dsv2::set_num_threads(1);
  const std::string mode = argv[1];
  std::vector<std::string> files;
  int runs = 5;
  for (int i = 3; i < argc; ++i) {
    if (std::string(argv[i]) == "--runs" && i + 1 < argc)
      runs = std::atoi(argv[++i]);
    else
      files.push_back(argv[i]);
  }
  std::string text;
  for (const auto& f : files) text += dsv2::read_text_file(f);

  if (mode == "encode-lines") {  // each line on its own, as documents are usually encoded
    std::vector<std::string> lines;
    for (size_t b = 0; b < text.size();) {
      size_t e = text.find('\n', b);
      e = e == std::string::npos ? text.size() : e + 1;
      lines.push_back(text.substr(b, e - b));
      b = e;
    }
    std::vector<double> times;
    size_t tokens = 0;
    for (int r = 0; r < runs; ++r) {
      const auto fresh = dsv2::Tokenizer::load(argv[2]);
      tokens = 0;
      const auto start = std::chrono::steady_clock::now();
      for (const auto& line : lines) tokens += fresh->encode(line, {false, false}).size();
      times.push_back(seconds_since(start));
    }
    const double t = median(times);
    std::printf("{\"impl\": \"dsv2\", \"mode\": \"encode-lines\", \"bytes\": %zu, \"tokens\": %zu, \"median_s\": %.4f, \"mb_per_s\": %.2f}\n",
                text.size(), tokens, t, text.size() / 1e6 / t);
  } else if (mode == "encode") {
    const auto tok = dsv2::Tokenizer::load(argv[2]);
    std::vector<double> times;
    size_t tokens = 0;
    for (int r = 0; r < runs; ++r) {
      // A fresh tokenizer each run: HF's word cache would otherwise be warm too.
      const auto fresh = dsv2::Tokenizer::load(argv[2]);
      const auto start = std::chrono::steady_clock::now();
      tokens = fresh->encode(text, {false, false}).size();
      times.push_back(seconds_since(start));
    }
    const double t = median(times);
    std::printf("{\"impl\": \"dsv2\", \"mode\": \"encode\", \"bytes\": %zu, \"tokens\": %zu, \"median_s\": %.4f, \"mb_per_s\": %.2f}\n",
                text.size(), tokens, t, text.size() / 1e6 / t);
  } else if (mode == "train") {
    const auto start = std::chrono::steady_clock::now();
    const auto pre_json = dsv2::deepseek_pre_tokenizer_json("deepseek-v2");
    const auto pre = dsv2::make_pre_tokenizer(pre_json, "pre");
    std::unordered_map<std::string, uint64_t> counts;
    dsv2::count_words(text, *pre, counts);
    dsv2::BpeTrainerOptions options;
    options.vocab_size = std::atoll(argv[2]);
    options.special_tokens = dsv2::deepseek_special_tokens();
    const auto bpe = dsv2::train_bpe(counts, options);
    std::printf("{\"impl\": \"dsv2\", \"mode\": \"train\", \"bytes\": %zu, \"vocab\": %zu, \"seconds\": %.2f}\n", text.size(),
                bpe.tokens.size(), seconds_since(start));
  }
  return 0;
}
