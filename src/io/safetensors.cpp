#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"

namespace dsv2 {

namespace {
// The safetensors format caps the header at 100 MB; a bigger length is a lie.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

uint64_t read_u64_le(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorInfo::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<TensorInfo> parse_safetensors(const std::byte* bytes, size_t size, const std::string* file_name) {
  const std::string& file = *file_name;
  if (size < 8) throw Error(file + ": truncated safetensors file (" + std::to_string(size) + " bytes, need at least 8)");
  const uint64_t header_len = read_u64_le(bytes);
  if (header_len > kMaxHeaderBytes || header_len > size - 8)
    throw Error(file + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                std::to_string(size) + " bytes)");
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw Error(file + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(file + ": header is not a JSON object");

  const std::byte* data_begin = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<TensorInfo> tensors;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string where = file + ": tensor '" + it.key() + "'";
    const auto& entry = it.value();
    if (!entry.is_object()) throw Error(where + ": entry is not an object");
    if (!entry.contains("dtype") || !entry["dtype"].is_string()) throw Error(where + ": missing or non-string 'dtype'");
    const std::string dtype_str = entry["dtype"].get<std::string>();
    const auto dtype = dtype_from_name(dtype_str);
    if (!dtype) throw Error(where + ": unknown dtype '" + dtype_str + "'");
    if (!entry.contains("shape") || !entry["shape"].is_array()) throw Error(where + ": missing or non-array 'shape'");
    if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2)
      throw Error(where + ": 'data_offsets' must be an array of two integers");

    TensorInfo info;
    info.name = it.key();
    info.dtype = *dtype;
    info.file = file_name;
    uint64_t numel = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) throw Error(where + ": shape entries must be non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 8 / dim) throw Error(where + ": shape is too large");
      numel *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      throw Error(where + ": data_offsets must be non-negative integers");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size)
      throw Error(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] out of range (data section is " + std::to_string(data_size) + " bytes)");
    const uint64_t expected = numel * dtype_size(*dtype);
    if (end - begin != expected)
      throw Error(where + ": " + std::to_string(end - begin) + " bytes for shape " + info.shape_string() + " of " +
                  dtype_str + " (expected " + std::to_string(expected) + ")");
    info.data = data_begin + begin;
    info.nbytes = expected;
    tensors.push_back(std::move(info));
  }

  // Overlapping byte ranges mean the header lies about at least one tensor.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors[a].data < tensors[b].data; });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto& prev = tensors[order[i - 1]];
    const auto& cur = tensors[order[i]];
    if (cur.nbytes > 0 && prev.data + prev.nbytes > cur.data)
      throw Error(file + ": tensors '" + prev.name + "' and '" + cur.name + "' overlap");
  }
  return tensors;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : map_(path), tensors_(parse_safetensors(map_.data(), map_.size(), &map_.path())) {
  for (size_t i = 0; i < tensors_.size(); ++i) by_name_.emplace(tensors_[i].name, i);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

uint64_t TensorSpec::nbytes() const {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<TensorSpec> specs) : specs_(std::move(specs)) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  for (const auto& t : specs_) {
    const uint64_t n = t.nbytes();
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {expected_, expected_ + n}}};
    expected_ += n;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // keep tensor data 8-byte aligned
  out_ = std::make_unique<AtomicFile>(path);
  uint8_t len_bytes[8];
  const uint64_t len = header_text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<uint8_t>(len >> (8 * i));
  out_->write(len_bytes, 8);
  out_->write(header_text.data(), header_text.size());
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::append(const void* data, uint64_t nbytes) {
  if (written_ + nbytes > expected_) throw Error("safetensors writer: more tensor bytes than the header declares");
  out_->write(data, nbytes);
  written_ += nbytes;
}

void SafetensorsWriter::commit() {
  if (written_ != expected_)
    throw Error("safetensors writer: " + std::to_string(written_) + " of " + std::to_string(expected_) + " tensor bytes written");
  out_->commit();
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) {
    specs.push_back({t.name, t.dtype, t.shape});
    if (specs.back().nbytes() != t.nbytes) throw Error(path + ": tensor '" + t.name + "' byte count does not match its shape");
  }
  SafetensorsWriter writer(path, std::move(specs));
  for (const auto& t : tensors) writer.append(t.data, t.nbytes);
  writer.commit();
}

}  // namespace dsv2
