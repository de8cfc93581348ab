// UTF-8 and Unicode helpers for the tokenizer: decoding with U+FFFD
// replacement (as Rust's from_utf8_lossy and Python's errors="replace"),
// GPT-2's byte <-> printable-character map, and normalisation forms (utf8proc).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv2::unicode {

// Decodes the code point at text[pos], advancing pos. Invalid or truncated
// sequences yield U+FFFD and advance by their maximal subpart (Unicode §3.9).
char32_t next_code_point(std::string_view text, size_t& pos);
void append_utf8(std::string& out, char32_t c);
// Replaces every invalid sequence with U+FFFD; valid text is returned unchanged.
std::string to_valid_utf8(std::string_view bytes);
// Length of the longest prefix of `bytes` that does not end inside a UTF-8
// character that later bytes could still complete (for streaming output).
size_t complete_prefix_length(std::string_view bytes);

// GPT-2 byte-level alphabet: byte b is written as the UTF-8 of a printable code point.
const std::array<std::string, 256>& byte_to_symbol();
// Inverse of byte_to_symbol for one code point; -1 if it is not a byte symbol.
int symbol_to_byte(char32_t c);

enum class Form { kNFC, kNFD, kNFKC, kNFKD };
std::string normalize(std::string_view text, Form form);
std::string lowercase(std::string_view text);

bool is_whitespace(char32_t c);    // Unicode White_Space (Rust char::is_whitespace)
bool is_alphanumeric(char32_t c);  // letters and numbers (Rust char::is_alphanumeric, approximately)
bool is_numeric(char32_t c);       // general category N* (Rust char::is_numeric)

}  // namespace dsv2::unicode
