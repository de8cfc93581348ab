// tokenizer.json "normalizer": NFC / NFD / NFKC / NFKD, Lowercase, Replace,
// Prepend, Strip, and Sequence of those.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace dsv2 {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string_view text) const = 0;
};

// nullptr for a JSON null. `where` is the JSON path used in errors.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);

}  // namespace dsv2
