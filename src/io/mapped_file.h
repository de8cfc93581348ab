// A read-only memory map of a whole file. Weights are used in place from the
// page cache, so a 30 GB checkpoint costs no copy and no private memory.
#pragma once

#include <cstddef>
#include <string>

namespace dsv2 {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Maps every page now (MADV_POPULATE_READ; a no-op where the kernel lacks
  // it), so that decoding does not take page faults the first time it reaches
  // each expert. Costs a read of the file if it is not in the page cache.
  void prefault() const;

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// The same for the pages of [data, data + bytes) of any mapping: a rank of a
// split model maps whole files but reads only its share of them.
void prefault_range(const void* data, size_t bytes);

}  // namespace dsv2
