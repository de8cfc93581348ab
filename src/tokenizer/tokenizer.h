// A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) for
// byte-level BPE models: text -> ids exactly as `tokenizers` computes them, and
// ids -> text. Pipeline: added tokens cut out -> normalizer -> pre-tokenizer ->
// BPE -> post-processor (BOS/EOS template).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_vocabulary.h"

namespace dsv2 {

class Bpe;
class Decoder;
class Normalizer;
class PreTokenizer;

struct EncodeOptions {
  bool add_special_tokens = true;  // apply the post-processor (e.g. prepend BOS)
  bool parse_special = false;      // recognise special-token text such as "<｜User｜>"
};

class Tokenizer {
 public:
  // `path`: a tokenizer.json file, or a directory holding tokenizer.json (and
  // optionally tokenizer_config.json). Throws Error naming the file and JSON path.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  static bool exists_in(const std::string& dir);  // DIR/tokenizer.json present
  // Copies tokenizer.json and tokenizer_config.json, those present, from one model
  // directory to another (each written atomically): what makes a trained or
  // converted model directory usable by every command and by transformers.
  static void copy_files(const std::string& from_dir, const std::string& to_dir);
  ~Tokenizer();

  // Any bytes are accepted; invalid UTF-8 is read as U+FFFD (as Python's errors="replace").
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Valid UTF-8; bytes that do not form characters become U+FFFD, as HF does.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  // The raw bytes of ids, before UTF-8 validation (for streaming).
  std::string decode_bytes(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  int32_t token_to_id(std::string_view token) const;  // -1 if absent
  std::string id_to_token(int32_t id) const;          // "" if absent
  int64_t vocab_size() const { return vocab_size_; }  // largest id + 1
  bool is_special(int32_t id) const;

  int32_t bos_id() const { return bos_id_; }  // -1 if none
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }
  const std::string& chat_template() const { return chat_template_; }
  const std::vector<int32_t>& prefix_ids() const { return prefix_; }  // added when add_special_tokens
  const std::vector<int32_t>& suffix_ids() const { return suffix_; }

 private:
  Tokenizer();
  void load_tokenizer_json(const std::string& file);
  void load_tokenizer_config(const std::string& file);

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Bpe> model_;
  std::unique_ptr<Decoder> decoder_;
  AddedVocabulary added_;
  std::vector<int32_t> prefix_, suffix_;
  bool has_post_processor_ = false;
  int64_t vocab_size_ = 0;
  int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
  std::string chat_template_;
};

// Turns a stream of ids into text without ever printing half a character:
// bytes of an unfinished UTF-8 sequence are held back until it completes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::string push(int32_t id);  // the text that became complete
  std::string finish();          // whatever is left (broken bytes as U+FFFD)

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
};

}  // namespace dsv2
