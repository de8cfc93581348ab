// GNU-style option parsing for the dsv2 subcommands: --name value, --name=value,
// -x value, and boolean --flag. Unknown options and missing values are errors.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv2::cli {

struct OptionSpec {
  std::string name;  // long name without "--"
  char short_name;   // 0 for none
  bool takes_value;
  std::string help;  // "VALUE  description"
};

class Args {
 public:
  // Throws UsageError on bad input; sets help_requested() on --help/-h.
  Args(int argc, char** argv, std::string usage, std::vector<OptionSpec> specs);

  bool help_requested() const { return help_; }
  // Prints the help text to stdout if --help was given; returns whether it was.
  bool print_help_if_requested() const;
  std::string help_text() const;
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const;
  // Every value given for a repeatable option, in order.
  const std::vector<std::string>& get_all(const std::string& name) const;
  std::string require(const std::string& name) const;
  long long get_int(const std::string& name, long long fallback) const;
  double get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::string usage_;
  std::vector<OptionSpec> specs_;
  std::map<std::string, std::string> values_;
  std::map<std::string, std::vector<std::string>> all_values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "1 2 3" or "1,2,3" -> ids; throws UsageError naming the bad item.
std::vector<int32_t> parse_ids(const std::string& text, const std::string& option);

}  // namespace dsv2::cli
