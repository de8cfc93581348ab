// 8-bit RGB images written as PNG files (libpng), for the plots dsv2 draws
// itself (dsv2 niah --plot).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv2 {

struct Rgb {
  uint8_t r, g, b;
};

struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major, 3 bytes a pixel

  RgbImage(int w, int h, Rgb background);
  void set(int x, int y, Rgb color);  // ignores pixels outside the image
  void fill(int x, int y, int w, int h, Rgb color);
};

// Writes `image` to `path` (a temporary name, then renamed); throws Error naming the path.
void write_png(const std::string& path, const RgbImage& image);

}  // namespace dsv2
