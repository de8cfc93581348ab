#include "train/rl_prompts.h"

#include <fstream>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "train/sft_data.h"

namespace dsv2 {

std::vector<RlPrompt> load_rl_prompts(const std::string& file, const Tokenizer& tokenizer, const ChatRenderer& render,
                                      int64_t context, int64_t max_new_tokens, const std::string& required_field) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file + ": cannot open");
  std::vector<RlPrompt> prompts;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    RlPrompt p;
    p.where = file + ":" + std::to_string(number);
    try {
      p.fields = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (p.fields.is_discarded()) throw Error("not valid JSON");
      if (!p.fields.is_object()) throw Error("not a JSON object (expected {\"prompt\": \"...\"} or {\"messages\": [...]})");
      if (p.fields.contains("prompt")) {
        if (!p.fields["prompt"].is_string()) throw Error("\"prompt\" is not a string");
        p.text = p.fields["prompt"].get<std::string>();
        p.tokens = tokenizer.encode(p.text);  // as dsv2 generate encodes a prompt (BOS included)
      } else if (p.fields.contains("messages")) {
        p.text = render(parse_chat_messages(p.fields), true);
        // The template writes BOS; special-token text is recognised, as dsv2 chat and dsv2 sft tokenize.
        p.tokens = tokenizer.encode(p.text, EncodeOptions{false, true});
      } else {
        throw Error("neither a \"prompt\" string nor a \"messages\" list");
      }
      if (p.tokens.empty()) throw Error("the prompt is empty");
      const int64_t n = static_cast<int64_t>(p.tokens.size());
      if (n + max_new_tokens > context)
        throw Error("the prompt is " + std::to_string(n) + " tokens: with --max-new-tokens " + std::to_string(max_new_tokens) +
                    " it is longer than the context (" + std::to_string(context) + ")");
      if (!required_field.empty() && !p.fields.contains(required_field))
        throw Error("no \"" + required_field + "\" field (the reward needs it)");
    } catch (const std::exception& error) {  // the template's own failures included
      throw Error(p.where + ": " + error.what());
    }
    prompts.push_back(std::move(p));
  }
  if (in.bad()) throw Error(file + ": read error");
  if (prompts.empty()) throw Error(file + ": no prompts");
  return prompts;
}

}  // namespace dsv2
