// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available) with
// the matching rules of the Oniguruma engine that Hugging Face tokenizers
// uses: ^ and $ match at line boundaries, \\s and \\p{..} are Unicode-aware.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv2 {

class Regex {
 public:
  // Throws Error naming `where` (a JSON path) if the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // All non-overlapping matches as [begin, end) byte offsets, left to right.
  // An empty match splits too; the search then moves on by one character.
  // `text` must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv2
