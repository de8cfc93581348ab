// Errors that cross a library boundary. Every message names the file, field or
// request at fault so that a user can fix the input without a debugger.
#pragma once

#include <stdexcept>
#include <string>

namespace dsv2 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws Error(message) when `condition` is false. Used for input validation,
// never for internal invariants (those are asserts).
inline void require(bool condition, const std::string& message) {
  if (!condition) throw Error(message);
}

}  // namespace dsv2
