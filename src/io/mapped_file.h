// Page-level memory: a read-only map of a whole file (weights are used in place
// from the page cache, so a 30 GB checkpoint costs no copy and no private
// memory), anonymous pages for what is built at load, and paging hints.
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
  // Whether [p, p + bytes) lies inside this map.
  bool contains(const void* p, size_t bytes) const;
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

// Drops this process's pages wholly inside [data, data + bytes) of a MappedFile
// (MADV_DONTNEED): they leave its resident memory, and a later read maps them
// again from the file, so the bytes stay readable. Load-time repacking calls it
// for rows that every product then reads from their panels. Best effort.
void release_range(const void* data, size_t bytes);

// Zeroed, page-aligned anonymous memory, asked for in transparent huge pages
// (MADV_HUGEPAGE): repacked weight panels, gigabytes written once at load,
// then fault in 512 times less often where the kernel grants 2 MB pages, and
// are not zero-filled a second time as a std::vector's are.
class AnonymousPages {
 public:
  AnonymousPages() = default;
  explicit AnonymousPages(size_t bytes);  // throws Error if the memory cannot be mapped
  ~AnonymousPages();
  AnonymousPages(AnonymousPages&& other) noexcept;
  AnonymousPages& operator=(AnonymousPages&& other) noexcept;
  AnonymousPages(const AnonymousPages&) = delete;
  AnonymousPages& operator=(const AnonymousPages&) = delete;

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dsv2
