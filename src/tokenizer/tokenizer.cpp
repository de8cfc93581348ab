#include "tokenizer/tokenizer.h"

#include <filesystem>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode.h"

namespace dsv2 {

namespace fs = std::filesystem;
using namespace json_fields;

namespace {

nlohmann::json parse_json_file(const std::string& file) {
  try {
    return nlohmann::json::parse(read_text_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw Error(file + ": not valid JSON: " + e.what());
  }
}

// The post-processor's single-sequence template as ids before and after the text.
void read_post_processor(const nlohmann::json& j, const std::string& where, const Tokenizer& tok,
                         std::vector<int32_t>& before, std::vector<int32_t>& after) {
  if (j.is_null()) return;
  const std::string type = type_of(j, where);
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "Sequence") {
    const auto& list = field(j, "processors", where);
    if (!list.is_array()) throw Error(where + ".processors: expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      read_post_processor(list[i], where + ".processors[" + std::to_string(i) + "]", tok, before, after);
    return;
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    const auto& cls = field(j, "cls", where);
    const auto& sep = field(j, "sep", where);
    if (!cls.is_array() || cls.size() != 2 || !cls[1].is_number_integer() || !sep.is_array() || sep.size() != 2 ||
        !sep[1].is_number_integer())
      throw Error(where + ": cls and sep must be [token, id]");
    before.push_back(cls[1].get<int32_t>());
    after.push_back(sep[1].get<int32_t>());
    return;
  }
  if (type != "TemplateProcessing") throw Error(where + ": unsupported post_processor type '" + type + "'");
  const auto& single = field(j, "single", where);
  const auto& specials = j.contains("special_tokens") ? j["special_tokens"] : nlohmann::json::object();
  if (!single.is_array()) throw Error(where + ".single: expected an array");
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const auto& item = single[i];
    const std::string at = where + ".single[" + std::to_string(i) + "]";
    if (item.is_object() && item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken")) throw Error(at + ": expected Sequence or SpecialToken");
    const std::string name = string_field(item["SpecialToken"], "id", at + ".SpecialToken");
    if (!specials.contains(name) || !specials[name].is_object() || !specials[name].contains("ids") ||
        !specials[name]["ids"].is_array())
      throw Error(where + ".special_tokens: no ids for '" + name + "'");
    for (const auto& id : specials[name]["ids"]) {
      if (!id.is_number_integer()) throw Error(where + ".special_tokens['" + name + "'].ids: expected integers");
      (seen_sequence ? after : before).push_back(id.get<int32_t>());
    }
  }
}

// "bos_token": "<s>" or {"content": "<s>", ...}
std::string token_text(const nlohmann::json& j, const char* name, const std::string& file) {
  if (!j.contains(name) || j[name].is_null()) return "";
  const auto& v = j[name];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  throw Error(file + ": field '" + name + "' must be a string or an object with 'content'");
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

bool Tokenizer::exists_in(const std::string& dir) { return fs::is_regular_file(fs::path(dir) / "tokenizer.json"); }

void Tokenizer::copy_files(const std::string& from_dir, const std::string& to_dir) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const fs::path from = fs::path(from_dir) / name;
    if (fs::exists(from)) write_file_atomically((fs::path(to_dir) / name).string(), read_text_file(from.string()));
  }
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  fs::path json_file = path, config_file;
  if (fs::is_directory(path)) {
    json_file = fs::path(path) / "tokenizer.json";
    config_file = fs::path(path) / "tokenizer_config.json";
  } else {
    config_file = fs::path(path).parent_path() / "tokenizer_config.json";
  }
  if (!fs::is_regular_file(json_file)) throw Error(json_file.string() + ": no such tokenizer file");
  tok->load_tokenizer_json(json_file.string());
  if (fs::is_regular_file(config_file)) tok->load_tokenizer_config(config_file.string());
  return tok;
}

void Tokenizer::load_tokenizer_json(const std::string& file) {
  const nlohmann::json j = parse_json_file(file);
  if (!j.is_object()) throw Error(file + ": expected a JSON object");
  const std::string root = file + ": ";
  normalizer_ = j.contains("normalizer") ? make_normalizer(j["normalizer"], root + "normalizer") : nullptr;
  pre_tokenizer_ = j.contains("pre_tokenizer") ? make_pre_tokenizer(j["pre_tokenizer"], root + "pre_tokenizer") : nullptr;
  decoder_ = j.contains("decoder") ? make_decoder(j["decoder"], root + "decoder") : nullptr;
  model_ = std::make_unique<Bpe>(field(j, "model", file), root + "model", pre_tokenizer_ && pre_tokenizer_->byte_level());

  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    const auto& list = j["added_tokens"];
    if (!list.is_array()) throw Error(root + "added_tokens: expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string at = root + "added_tokens[" + std::to_string(i) + "]";
      const auto& t = list[i];
      const auto& id = field(t, "id", at);
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
        throw Error(at + ".id: expected a non-negative integer");
      AddedToken token{string_field(t, "content", at), id.get<int32_t>(), bool_field(t, "special", at, false),
                       bool_field(t, "lstrip", at, false), bool_field(t, "rstrip", at, false),
                       bool_field(t, "single_word", at, false), bool_field(t, "normalized", at, false)};
      if (token.content.empty()) throw Error(at + ".content: must not be empty");
      model_->add_token(token.content, token.id);
      added_.add(token);
    }
  }
  added_.finish(normalizer_.get());
  vocab_size_ = model_->id_limit();
  has_post_processor_ = j.contains("post_processor") && !j["post_processor"].is_null();
  if (j.contains("post_processor")) read_post_processor(j["post_processor"], root + "post_processor", *this, prefix_, suffix_);
  for (int32_t id : prefix_)
    if (id < 0 || id >= vocab_size_) throw Error(root + "post_processor: id " + std::to_string(id) + " is outside the vocabulary");
  for (int32_t id : suffix_)
    if (id < 0 || id >= vocab_size_) throw Error(root + "post_processor: id " + std::to_string(id) + " is outside the vocabulary");
}

void Tokenizer::load_tokenizer_config(const std::string& file) {
  const nlohmann::json j = parse_json_file(file);
  if (!j.is_object()) throw Error(file + ": expected a JSON object");
  auto lookup = [&](const char* name) {
    const std::string text = token_text(j, name, file);
    if (text.empty()) return -1;
    const int32_t id = token_to_id(text);
    if (id < 0) throw Error(file + ": field '" + name + "' names '" + text + "', which is not in the vocabulary");
    return id;
  };
  bos_id_ = lookup("bos_token");
  eos_id_ = lookup("eos_token");
  pad_id_ = lookup("pad_token");
  // add_bos_token / add_eos_token build the template only when tokenizer.json has no
  // post-processor: transformers 5 (like `tokenizers`) otherwise follows tokenizer.json.
  const bool has_flags = j.contains("add_bos_token") || j.contains("add_eos_token");
  if (has_flags && !has_post_processor_) {
    const bool add_bos = bool_field(j, "add_bos_token", file, false), add_eos = bool_field(j, "add_eos_token", file, false);
    if (add_bos && bos_id_ < 0) throw Error(file + ": add_bos_token is true but there is no bos_token");
    if (add_eos && eos_id_ < 0) throw Error(file + ": add_eos_token is true but there is no eos_token");
    prefix_.clear();
    suffix_.clear();
    if (add_bos) prefix_.push_back(bos_id_);
    if (add_eos) suffix_.push_back(eos_id_);
  }
  if (j.contains("chat_template") && !j["chat_template"].is_null()) {
    const auto& t = j["chat_template"];
    if (t.is_string()) {
      chat_template_ = t.get<std::string>();
    } else if (t.is_array()) {  // [{"name": "default", "template": "..."}, ...]
      for (const auto& item : t)
        if (item.is_object() && item.contains("template") && item["template"].is_string() &&
            (chat_template_.empty() || (item.contains("name") && item["name"] == "default")))
          chat_template_ = item["template"].get<std::string>();
    } else {
      throw Error(file + ": field 'chat_template' must be a string or a list of named templates");
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  if (options.add_special_tokens) ids = prefix_;
  const std::string valid = unicode::to_valid_utf8(text);
  std::vector<std::string> words;
  for (auto& segment : added_.split(valid, normalizer_.get(), options.parse_special)) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    words.assign(1, std::move(segment.text));
    if (pre_tokenizer_) pre_tokenizer_->split(words);
    for (const auto& word : words)
      if (!word.empty()) model_->encode_word(word, ids);
  }
  if (options.add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

std::string Tokenizer::decode_bytes(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_ || model_->id_to_token(id).empty())
      throw Error("token id " + std::to_string(id) + " is not in the vocabulary (size " + std::to_string(vocab_size_) + ")");
    if (skip_special_tokens && is_special(id)) continue;
    tokens.push_back(model_->id_to_token(id));
  }
  if (decoder_) decoder_->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return unicode::to_valid_utf8(decode_bytes(ids, skip_special_tokens));
}

int32_t Tokenizer::token_to_id(std::string_view token) const { return model_->token_to_id(token); }
std::string Tokenizer::id_to_token(int32_t id) const { return model_->id_to_token(id); }

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* t = added_.find_by_id(id);
  return t && t->special;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tokenizer_.decode_bytes({id});
  const size_t ready = unicode::complete_prefix_length(pending_);
  std::string out = unicode::to_valid_utf8(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = unicode::to_valid_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace dsv2
