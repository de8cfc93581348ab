#include "train/rewards.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace dsv2 {

std::vector<RewardInput> reward_inputs(const std::vector<const RlPrompt*>& prompts,
                                       const std::vector<std::vector<Completion>>& completions, const Tokenizer& tokenizer) {
  std::vector<RewardInput> inputs;
  for (size_t p = 0; p < prompts.size(); ++p)
    for (const Completion& c : completions[p]) {
      RewardInput in{prompts[p], tokenizer.decode(c.tokens, /*skip_special_tokens=*/true), c.stopped, prompts[p]->tokens};
      in.tokens.insert(in.tokens.end(), c.tokens.begin(), c.tokens.end());
      inputs.push_back(std::move(in));
    }
  return inputs;
}

namespace {

std::string trim(std::string s) {
  const char* space = " \t\r\n";
  const size_t a = s.find_first_not_of(space);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(space) - a + 1);
}

// The text after the last answer marker, to the end of its line; nothing without one.
std::optional<std::string> answer_line(const std::string& text) {
  size_t best = std::string::npos, after = 0;
  for (const std::string marker : {"Answer:", "答案：", "答案:"}) {
    const size_t at = text.rfind(marker);
    if (at != std::string::npos && (best == std::string::npos || at > best)) best = at, after = at + marker.size();
  }
  if (best == std::string::npos) return std::nullopt;
  return trim(text.substr(after, text.find('\n', after) - after));
}

// A whole string as a finite number (thousands separators dropped), or nothing.
std::optional<double> as_number(std::string s) {
  s = trim(s);
  std::string digits;
  for (char ch : s)
    if (ch != ',') digits += ch;
  while (!digits.empty() && digits.back() == '.') digits.pop_back();  // "42." at a sentence's end
  if (digits.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(digits.c_str(), &end);
  if (end != digits.c_str() + digits.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

class ExactAnswer : public Reward {
 public:
  std::vector<double> score(const std::vector<RewardInput>& inputs) override {
    std::vector<double> r;
    for (const RewardInput& in : inputs) {
      const auto answer = extract_answer(in.completion);
      r.push_back(answer && answers_match(*answer, in.prompt->fields["answer"]) ? 1.0 : 0.0);
    }
    return r;
  }
  std::string required_field() const override { return "answer"; }
};

class Format : public Reward {
 public:
  std::vector<double> score(const std::vector<RewardInput>& inputs) override {
    std::vector<double> r;
    for (const RewardInput& in : inputs) {
      const auto line = answer_line(in.completion);
      r.push_back(0.5 * in.stopped + 0.5 * (line && !line->empty()));
    }
    return r;
  }
};

// A temporary file removed when this goes out of scope.
struct TempFile {
  std::string path;
  TempFile() {
    std::string pattern = (std::filesystem::temp_directory_path() / "dsv2-reward-XXXXXX").string();
    const int fd = ::mkstemp(pattern.data());
    if (fd < 0) throw Error("reward command: cannot create a temporary file");
    ::close(fd);
    path = pattern;
  }
  ~TempFile() { std::remove(path.c_str()); }
};

class Command : public Reward {
 public:
  explicit Command(std::string command) : command_(std::move(command)) {}
  std::vector<double> score(const std::vector<RewardInput>& inputs) override {
    const std::string who = "reward command `" + command_ + "`";
    TempFile input, output;
    {
      std::ofstream in(input.path, std::ios::binary);
      for (const RewardInput& x : inputs) {
        nlohmann::json j = x.prompt->fields;
        j["prompt"] = x.prompt->text;
        j["completion"] = x.completion;
        in << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      }
      if (!in) throw Error(who + ": cannot write its input");
    }
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(who + ": cannot start it");
    if (pid == 0) {  // the child: stdin and stdout from and to the files, stderr passed through
      const int in = ::open(input.path.c_str(), O_RDONLY), out = ::open(output.path.c_str(), O_WRONLY | O_TRUNC);
      if (in < 0 || out < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0) ::_exit(127);
      ::execl("/bin/sh", "sh", "-c", command_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
      if (errno != EINTR) throw Error(who + ": lost it");
    if (WIFSIGNALED(status)) throw Error(who + " was killed by signal " + std::to_string(WTERMSIG(status)));
    if (WEXITSTATUS(status) != 0) throw Error(who + " exited with status " + std::to_string(WEXITSTATUS(status)));
    std::ifstream out(output.path, std::ios::binary);
    std::vector<double> rewards;
    std::string line;
    for (int64_t number = 1; std::getline(out, line); ++number) {
      if (trim(line).empty()) continue;
      char* end = nullptr;
      const std::string t = trim(line);
      const double v = std::strtod(t.c_str(), &end);
      if (end != t.c_str() + t.size() || !std::isfinite(v))
        throw Error(who + ": line " + std::to_string(number) + " of its output is not a number: \"" + t.substr(0, 60) + "\"");
      rewards.push_back(v);
    }
    if (rewards.size() != inputs.size())
      throw Error(who + " printed " + std::to_string(rewards.size()) + " numbers for " + std::to_string(inputs.size()) +
                  " completions (one per line expected)");
    return rewards;
  }

 private:
  std::string command_;
};

}  // namespace

std::optional<std::string> extract_answer(const std::string& completion) {
  if (auto line = answer_line(completion); line && !line->empty()) return line;
  static const std::regex number(R"(-?\d[\d,]*(\.\d+)?)");
  std::optional<std::string> last;
  for (auto it = std::sregex_iterator(completion.begin(), completion.end(), number); it != std::sregex_iterator(); ++it)
    last = it->str();
  return last;
}

bool answers_match(const std::string& answer, const nlohmann::json& expected) {
  const std::string want = expected.is_string() ? expected.get<std::string>() : expected.dump();
  const auto a = as_number(answer), b = as_number(want);
  if (a && b) return *a == *b;
  std::string got = trim(answer);
  while (!got.empty() && (got.back() == '.' || got.back() == ',')) got.pop_back();
  return got == trim(want);
}

std::unique_ptr<Reward> make_builtin_reward(const std::string& name) {
  if (name == "exact-answer") return std::make_unique<ExactAnswer>();
  if (name == "format") return std::make_unique<Format>();
  throw Error("option --reward: exact-answer or format, not \"" + name + "\"");
}

std::unique_ptr<Reward> make_command_reward(const std::string& command) { return std::make_unique<Command>(command); }

}  // namespace dsv2
