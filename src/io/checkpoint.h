// All safetensors files of a Hugging Face model directory behind one lookup:
// "model.safetensors", or the shards listed by "model.safetensors.index.json",
// or (as transformers accepts) every *.safetensors file in the directory.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/safetensors.h"

namespace dsv2 {

class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);  // throws Error

  const std::string& dir() const { return dir_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, const TensorInfo*> by_name_;
};

// Reads a whole small text file (config.json, index files).
std::string read_text_file(const std::string& path);

}  // namespace dsv2
