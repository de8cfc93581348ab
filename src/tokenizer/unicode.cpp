#include "tokenizer/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "core/error.h"

namespace dsv2::unicode {

char32_t next_code_point(std::string_view s, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(pos);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  int length;
  char32_t c;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2, c = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3, c = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // no overlongs
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4, c = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    ++pos;
    return 0xFFFD;
  }
  size_t i = pos + 1;
  for (int k = 1; k < length; ++k, ++i) {
    const unsigned char lower = k == 1 ? lo : 0x80, upper = k == 1 ? hi : 0xBF;
    if (i >= s.size() || byte(i) < lower || byte(i) > upper) {
      pos = i;  // the maximal subpart is replaced by one U+FFFD
      return 0xFFFD;
    }
    c = (c << 6) | (byte(i) & 0x3F);
  }
  pos = i;
  return c;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string to_valid_utf8(std::string_view bytes) {
  size_t pos = 0;
  bool valid = true;
  while (pos < bytes.size() && valid) {
    const size_t start = pos;
    if (next_code_point(bytes, pos) == 0xFFFD && bytes.substr(start, 3) != "\xEF\xBF\xBD") valid = false;
  }
  if (valid) return std::string(bytes);
  std::string out;
  out.reserve(bytes.size() + 8);
  for (pos = 0; pos < bytes.size();) append_utf8(out, next_code_point(bytes, pos));
  return out;
}

size_t complete_prefix_length(std::string_view s) {
  // Find the lead byte of the last character (at most 3 continuation bytes back).
  const size_t n = s.size();
  size_t lead = n;
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    if ((static_cast<unsigned char>(s[n - back]) & 0xC0) != 0x80) {
      lead = n - back;
      break;
    }
  }
  if (lead == n) return n;
  // Decode what is there: if it stops with U+FFFD exactly at the end of the input,
  // the character is merely unfinished and later bytes may complete it.
  size_t pos = lead;
  const char32_t c = next_code_point(s, pos);
  if (c != 0xFFFD || pos != n || s.substr(lead) == "\xEF\xBF\xBD") return n;
  const auto b0 = static_cast<unsigned char>(s[lead]);
  const bool multi_byte_lead = b0 >= 0xC2 && b0 <= 0xF4;
  return multi_byte_lead ? lead : n;
}

const std::array<std::string, 256>& byte_to_symbol() {
  static const std::array<std::string, 256> table = [] {
    // GPT-2: printable Latin-1 bytes stand for themselves, the others map to U+0100 onwards.
    std::array<std::string, 256> t;
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      append_utf8(t[b], printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++));
    }
    return t;
  }();
  return table;
}

int symbol_to_byte(char32_t c) {
  static const std::array<int, 512> table = [] {
    std::array<int, 512> t;
    t.fill(-1);
    const auto& symbols = byte_to_symbol();
    for (int b = 0; b < 256; ++b) {
      size_t pos = 0;
      t[next_code_point(symbols[b], pos)] = b;
    }
    return t;
  }();
  return c < 512 ? table[c] : -1;
}

std::string normalize(std::string_view text, Form form) {
  if (text.empty()) return {};
  int options = UTF8PROC_STABLE;
  switch (form) {
    case Form::kNFC: options |= UTF8PROC_COMPOSE; break;
    case Form::kNFD: options |= UTF8PROC_DECOMPOSE; break;
    case Form::kNFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case Form::kNFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                              &out, static_cast<utf8proc_option_t>(options));
  if (n < 0) throw Error(std::string("unicode normalisation failed: ") + utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(out, &std::free);
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) append_utf8(out, static_cast<char32_t>(utf8proc_tolower(next_code_point(text, pos))));
  return out;
}

bool is_whitespace(char32_t c) {
  switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_numeric(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

bool is_alphanumeric(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) || is_numeric(c);
}

}  // namespace dsv2::unicode
