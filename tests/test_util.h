// Helpers shared by the tests: fixture paths, temp directories, file I/O and
// running the dsv2 binary.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv2::test {

std::string fixture(const std::string& relative);  // tests/fixtures/<relative>
std::vector<float> read_f32(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);
std::string read_bytes(const std::string& path);

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  std::string path(const std::string& name = "") const;

 private:
  std::filesystem::path dir_;
};

// Copies a fixture model directory (all files) into `dest`.
void copy_model(const std::string& fixture_name, const std::string& dest);

struct CommandResult {
  int exit_code;
  std::string out, err;
};
// Runs the dsv2 binary with `args` (shell-quoted by the caller).
CommandResult run_dsv2(const std::string& args);
// Runs `mpirun --oversubscribe --allow-run-as-root <launch>`, where launch is
// e.g. "-np 2 " + dsv2_binary() + " train ...".
CommandResult run_mpirun(const std::string& launch);
std::string dsv2_binary();
std::string mpirun_command();  // mpirun with the options the tests always need

// Deterministic English-like text (sentences from a small grammar over a fixed
// vocabulary), for tests that train: they need no corpus, and a few steps
// already lower the loss on it.
std::string generated_text(size_t bytes, uint64_t seed = 1);

// The largest |a - b| (infinite where either is NaN) and the largest |b|.
struct Diff {
  float max_abs_diff, max_abs_ref;
};
Diff compare(const std::vector<float>& a, const std::vector<float>& b);

// Gradients of one tensor: max |got − want| ≤ `relative` × max |want| (+1e-9, for all-zero tensors).
// The message names the tensor and both maxima.
testing::AssertionResult gradient_near(const std::string& name, const float* got, const float* want, int64_t n,
                                       double relative = 1e-4);

// Every complete line of a JSON Lines file, parsed; safe to call while a run
// appends to it.
std::vector<nlohmann::json> json_lines(const std::string& file);
// json_lines of DIR/metrics.jsonl (dsv2 train, sft, grpo).
std::vector<nlohmann::json> logged_lines(const std::string& out_dir);
// The "loss" of every line of DIR/metrics.jsonl.
std::vector<double> logged_losses(const std::string& out_dir);

// Starts `dsv2 <args>` (a training command writing into out_dir) and kills it
// with SIGKILL once out_dir/metrics.jsonl has `lines` lines. True when the
// kill landed mid-run (the process had not ended by itself).
bool kill_when_logged(const std::string& args, const std::string& out_dir, size_t lines);

}  // namespace dsv2::test
