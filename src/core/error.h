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
// A literal message is turned into a std::string (an allocation) only on failure.
inline void require(bool condition, const char* message) {
  if (!condition) throw Error(message);
}
// The same with the message built only on failure: for checks on the decoding
// path, which must not allocate (a std::string message would, every call).
template <class MakeMessage>
inline void require_lazy(bool condition, const MakeMessage& make_message) {
  if (!condition) throw Error(make_message());
}

}  // namespace dsv2
