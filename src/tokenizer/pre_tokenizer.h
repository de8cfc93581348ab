// tokenizer.json "pre_tokenizer": cuts normalised text into words before BPE.
// Split (Regex or String pattern; Removed / Isolated / MergedWithPrevious /
// MergedWithNext / Contiguous; invert), Digits, ByteLevel, Sequence.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv2 {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every word by the words it splits into (empty words are dropped).
  virtual void split(std::vector<std::string>& words) const = 0;
  // Whether words leave this stage as bytes for the byte-level BPE alphabet.
  virtual bool byte_level() const { return false; }
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where);

// The pre-tokenizer JSON dsv2's BPE trainer writes for `--pre deepseek-v2|deepseek-v3`.
nlohmann::json deepseek_pre_tokenizer_json(const std::string& name);

}  // namespace dsv2
