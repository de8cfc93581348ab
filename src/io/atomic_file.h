// Files are written to "<path>.tmp.<pid>" and renamed into place on commit(),
// so a reader (or a crash) never sees half a file.
#pragma once

#include <cstdio>
#include <string>

namespace dsv2 {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // throws Error
  ~AtomicFile();                                 // removes the temp file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void commit();  // flush, fsync, rename

 private:
  std::string path_, temp_path_;
  std::FILE* file_ = nullptr;
};

void write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace dsv2
