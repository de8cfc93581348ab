// dsv2 tokenize / detokenize: text <-> ids with a model's tokenizer.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace dsv2::cli {

std::unique_ptr<Tokenizer> load_tokenizer_option(const Args& args) {
  if (args.has("tokenizer")) return Tokenizer::load(args.get("tokenizer"));
  if (args.has("model") || !args.has("tokenizer")) {
    const std::string dir = model_dir_option(args);
    if (!Tokenizer::exists_in(dir)) throw Error(dir + ": no tokenizer.json in the model directory");
    return Tokenizer::load(dir);
  }
  throw UsageError("give -m DIR or --tokenizer FILE|DIR");
}

int run_tokenize(int argc, char** argv) {
  Args args(argc, argv, "dsv2 tokenize (-m DIR | --tokenizer FILE|DIR) [--no-bos] [--special] (--text S | --file F)",
            {kModelOption,
             {"tokenizer", 0, true, "PATH      tokenizer.json, or a directory holding it"},
             {"text", 0, true, "S         the text to tokenize"},
             {"file", 'f', true, "F         read the text from a file ('-' for standard input)"},
             {"no-bos", 0, false, "          do not add the BOS/EOS template of the post-processor"},
             {"special", 0, false, "          recognise special-token text such as <｜User｜>"}});
  if (args.print_help_if_requested()) return 0;
  const auto tokenizer = load_tokenizer_option(args);
  std::string text;
  if (args.has("text") == args.has("file")) throw UsageError("give exactly one of --text and --file");
  if (args.has("text")) {
    text = args.get("text");
  } else {
    const std::string path = args.get("file");
    std::ostringstream ss;
    if (path == "-") {
      ss << std::cin.rdbuf();
    } else {
      std::ifstream in(path, std::ios::binary);
      if (!in) throw Error(path + ": cannot open");
      ss << in.rdbuf();
    }
    text = ss.str();
  }
  const auto ids = tokenizer->encode(text, {!args.has("no-bos"), args.has("special")});
  std::string line;
  for (int32_t id : ids) line += (line.empty() ? "" : " ") + std::to_string(id);
  std::printf("%s\n", line.c_str());
  return 0;
}

int run_detokenize(int argc, char** argv) {
  Args args(argc, argv, "dsv2 detokenize (-m DIR | --tokenizer FILE|DIR) --ids \"...\" [--skip-special]",
            {kModelOption,
             {"tokenizer", 0, true, "PATH      tokenizer.json, or a directory holding it"},
             {"ids", 0, true, "\"IDS\"     token ids, separated by spaces or commas"},
             {"skip-special", 0, false, "          leave special tokens out of the text"}});
  if (args.print_help_if_requested()) return 0;
  const auto tokenizer = load_tokenizer_option(args);
  const auto ids = parse_ids(args.require("ids"), "ids");
  const std::string text = tokenizer->decode(ids, args.has("skip-special"));
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::printf("\n");
  return 0;
}

}  // namespace dsv2::cli
