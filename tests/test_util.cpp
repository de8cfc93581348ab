#include "test_util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace dsv2::test {

namespace fs = std::filesystem;

std::string fixture(const std::string& relative) { return std::string(DSV2_FIXTURES_DIR) + "/" + relative; }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<float> read_f32(const std::string& path) {
  const std::string bytes = read_bytes(path);
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TempDir::TempDir() {
  std::random_device rd;
  dir_ = fs::temp_directory_path() / ("dsv2_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
  fs::create_directories(dir_);
}
TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}
std::string TempDir::path(const std::string& name) const { return name.empty() ? dir_.string() : (dir_ / name).string(); }

void copy_model(const std::string& fixture_name, const std::string& dest) {
  fs::create_directories(dest);
  for (const auto& entry : fs::directory_iterator(fixture(fixture_name)))
    fs::copy_file(entry.path(), fs::path(dest) / entry.path().filename(), fs::copy_options::overwrite_existing);
}

namespace {

CommandResult run_command(const std::string& command_line) {
  TempDir tmp;
  const std::string out = tmp.path("out"), err = tmp.path("err");
  const int status = std::system((command_line + " >" + out + " 2>" + err).c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  r.out = read_bytes(out);
  r.err = read_bytes(err);
  return r;
}

}  // namespace

std::string dsv2_binary() { return DSV2_BINARY; }
std::string mpirun_command() {
  // Under AddressSanitizer, LeakSanitizer reports Open MPI's own allocations as
  // leaks at exit (../shared/notes/MPI_ACROSS_NAMESPACES.md): off for MPI jobs only.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string options = std::string(asan ? asan : "") + ":detect_leaks=0";
  return "ASAN_OPTIONS='" + options + "' " + std::string(DSV2_MPIRUN) + " --oversubscribe --allow-run-as-root";
}

CommandResult run_dsv2(const std::string& args) { return run_command(dsv2_binary() + " " + args); }
CommandResult run_mpirun(const std::string& launch) { return run_command(mpirun_command() + " " + launch); }

std::string generated_text(size_t bytes, uint64_t seed) {
  static const char* const kSubjects[] = {"the old sailor", "a young girl", "the king", "my brother", "the little dog",
                                          "a stranger", "the farmer", "her mother", "the captain", "an old woman"};
  static const char* const kVerbs[] = {"walked to", "looked at", "spoke of", "waited for", "ran past",
                                       "dreamed of", "sang about", "found", "remembered", "carried"};
  static const char* const kObjects[] = {"the quiet harbour", "a silver key", "the green hills", "the long road",
                                         "a broken lantern", "the morning bell", "the river", "a letter", "the garden",
                                         "the dark forest"};
  static const char* const kEndings[] = {" at dawn", " in the rain", "", " once more", " before supper", ""};
  std::mt19937_64 rng(seed);
  auto pick = [&](const auto& list) { return list[rng() % (sizeof(list) / sizeof(list[0]))]; };
  std::string text;
  while (text.size() < bytes) {
    std::string sentence = std::string(pick(kSubjects)) + " " + pick(kVerbs) + " " + pick(kObjects) + pick(kEndings) + ".";
    sentence[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(sentence[0])));
    text += sentence + (rng() % 5 == 0 ? "\n" : " ");
  }
  return text;
}

Diff compare(const std::vector<float>& a, const std::vector<float>& b) {
  Diff d{0.0f, 0.0f};
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const float diff = std::fabs(a[i] - b[i]);
    d.max_abs_diff = std::max(d.max_abs_diff, std::isnan(diff) ? INFINITY : diff);  // std::max would skip a NaN
    d.max_abs_ref = std::max(d.max_abs_ref, std::fabs(b[i]));
  }
  if (a.size() != b.size()) d.max_abs_diff = INFINITY;
  return d;
}

testing::AssertionResult gradient_near(const std::string& name, const float* got, const float* want, int64_t n,
                                       double relative) {
  double max_want = 0.0, max_diff = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    max_want = std::max(max_want, std::fabs(double(want[i])));
    max_diff = std::max(max_diff, std::fabs(double(want[i]) - got[i]));
  }
  if (max_diff <= relative * max_want + 1e-9) return testing::AssertionSuccess();
  return testing::AssertionFailure() << name << ": max |diff| " << max_diff << " over max |grad| " << max_want;
}

bool kill_when_logged(const std::string& args, const std::string& out_dir, size_t lines) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string command = "exec " + dsv2_binary() + " " + args + " 2>/dev/null >/dev/null";
    execl("/bin/sh", "sh", "-c", command.c_str(), nullptr);
    _exit(127);
  }
  for (int i = 0; i < 120000 && logged_lines(out_dir).size() < lines; ++i) std::this_thread::sleep_for(std::chrono::microseconds(500));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status);
}

std::vector<nlohmann::json> logged_lines(const std::string& out_dir) { return json_lines(out_dir + "/metrics.jsonl"); }

std::vector<nlohmann::json> json_lines(const std::string& file) {
  // Only lines their newline has completed: a run may be writing the last one.
  std::ifstream in(file);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<nlohmann::json> lines;
  for (size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
    if (end > start) lines.push_back(nlohmann::json::parse(text.substr(start, end - start)));
  return lines;
}

std::vector<double> logged_losses(const std::string& out_dir) {
  std::vector<double> v;
  for (const nlohmann::json& line : logged_lines(out_dir)) v.push_back(line["loss"].get<double>());
  return v;
}

}  // namespace dsv2::test
