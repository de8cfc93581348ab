// tokenizer.json "decoder": tokens back to bytes. ByteLevel (symbols back to
// their bytes; tokens that are not byte-level, such as special tokens, keep
// their own UTF-8), Replace, Fuse, Strip, ByteFallback and Sequence.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv2 {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings in place (HF's decode_chain).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// nullptr for a JSON null (tokens are then joined as they are).
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where);

}  // namespace dsv2
