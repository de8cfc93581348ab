#include "cli/args.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "dist/runtime.h"

namespace dsv2::cli {

Args::Args(int argc, char** argv, std::string usage, std::vector<OptionSpec> specs)
    : usage_(std::move(usage)), specs_(std::move(specs)) {
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      positional_.push_back(arg);
      continue;
    }
    const OptionSpec* spec = nullptr;
    std::optional<std::string> inline_value;
    if (arg.rfind("--", 0) == 0) {
      std::string name = arg.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      for (const auto& s : specs_)
        if (s.name == name) spec = &s;
    } else if (arg.size() == 2) {
      for (const auto& s : specs_)
        if (s.short_name == arg[1]) spec = &s;
    }
    if (!spec) throw UsageError("unknown option '" + arg + "'");
    if (!spec->takes_value) {
      if (inline_value) throw UsageError("option --" + spec->name + " takes no value");
      values_[spec->name] = "1";
      continue;
    }
    if (inline_value) {
      values_[spec->name] = *inline_value;
    } else {
      if (i + 1 >= argc) throw UsageError("option --" + spec->name + " needs a value");
      values_[spec->name] = argv[++i];
    }
    all_values_[spec->name].push_back(values_[spec->name]);
  }
}

std::string Args::help_text() const {
  std::string text = "usage: " + usage_ + "\n\noptions:\n";
  for (const auto& s : specs_) {
    std::string left = "  ";
    left += s.short_name ? std::string("-") + s.short_name + ", " : "    ";
    left += "--" + s.name;
    text += left + std::string(left.size() < 26 ? 26 - left.size() : 1, ' ') + s.help + "\n";
  }
  text += "  -h, --help" + std::string(16, ' ') + "show this help\n";
  return text;
}

bool Args::print_help_if_requested() const {
  if (help_ && dist::world().is_root()) std::fputs(help_text().c_str(), stdout);  // under mpirun: once
  return help_;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

const std::vector<std::string>& Args::get_all(const std::string& name) const {
  static const std::vector<std::string> none;
  auto it = all_values_.find(name);
  return it == all_values_.end() ? none : it->second;
}

std::string Args::require(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw UsageError("missing required option --" + name);
  return it->second;
}

long long Args::get_int(const std::string& name, long long fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE) throw UsageError("option --" + name + ": '" + v + "' is not an integer");
  return value;
}

double Args::get_double(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno == ERANGE) throw UsageError("option --" + name + ": '" + v + "' is not a number");
  return value;
}

std::vector<int32_t> parse_ids(const std::string& text, const std::string& option) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ' ' || text[i] == ',' || text[i] == '\t' || text[i] == '\n') {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != ',' && text[j] != '\t' && text[j] != '\n') ++j;
    const std::string item = text.substr(i, j - i);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (*end != '\0' || errno == ERANGE || v < 0 || v > INT32_MAX)
      throw UsageError("option --" + option + ": '" + item + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  if (ids.empty()) throw UsageError("option --" + option + ": no token ids given");
  return ids;
}

}  // namespace dsv2::cli
