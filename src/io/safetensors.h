// Safetensors reader: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then the raw tensor bytes. The header
// is checked completely before any tensor is handed out, so a truncated or
// lying file fails here with its name instead of crashing later.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "io/mapped_file.h"

namespace dsv2 {

class AtomicFile;

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // inside the file's mapping
  uint64_t nbytes = 0;
  const std::string* file = nullptr;  // for error messages

  int64_t numel() const;
  std::string shape_string() const;  // "[2048, 512]"
};

// Validates a whole safetensors image (header + data) held in memory and lists
// its tensors; `file` names it in errors and is stored in each TensorInfo.
std::vector<TensorInfo> parse_safetensors(const std::byte* bytes, size_t size, const std::string* file);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws Error

  const std::string& path() const { return map_.path(); }
  void prefault() const { map_.prefault(); }
  // Whether [p, p + bytes) lies in this file's map (a tensor used in place).
  bool maps(const void* p, size_t bytes) const { return map_.contains(p, bytes); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr if absent

 private:
  MappedFile map_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

// Writes tensors given as (name, dtype, shape, bytes) into `path` atomically.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  uint64_t nbytes;
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

// The same file written tensor by tensor, for models too large to hold twice
// in memory: the header is written from the declared (name, dtype, shape)
// list, then append() must deliver each tensor's bytes in that order.
struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes() const;
};
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, std::vector<TensorSpec> specs);
  ~SafetensorsWriter();
  void append(const void* data, uint64_t nbytes);  // the next tensor, whole, or a piece of it
  void commit();                                   // every byte delivered, then rename into place

 private:
  std::vector<TensorSpec> specs_;
  uint64_t expected_ = 0, written_ = 0;
  std::unique_ptr<AtomicFile> out_;
};

}  // namespace dsv2
