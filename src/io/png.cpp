#include "io/png.h"

#include <png.h>

#include <cstdio>

#include "core/error.h"
#include "io/atomic_file.h"

namespace dsv2 {

RgbImage::RgbImage(int w, int h, Rgb background) : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3) {
  fill(0, 0, w, h, background);
}

void RgbImage::set(int x, int y, Rgb color) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  uint8_t* p = pixels.data() + (static_cast<size_t>(y) * width + x) * 3;
  p[0] = color.r, p[1] = color.g, p[2] = color.b;
}

void RgbImage::fill(int x, int y, int w, int h, Rgb color) {
  for (int j = y; j < y + h; ++j)
    for (int i = x; i < x + w; ++i) set(i, j, color);
}

namespace {

// libpng reports errors through a longjmp; we write into memory first, so the
// only failure is an out-of-memory one.
void append(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::string*>(png_get_io_ptr(png));
  out->append(reinterpret_cast<const char*>(data), n);
}

}  // namespace

void write_png(const std::string& path, const RgbImage& image) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  require(png && info, path + ": cannot start a PNG image");
  std::string bytes;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw Error(path + ": cannot encode the PNG image");
  }
  png_set_write_fn(png, &bytes, append, nullptr);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < image.height; ++y)
    png_write_row(png, const_cast<png_bytep>(image.pixels.data() + static_cast<size_t>(y) * image.width * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  write_file_atomically(path, bytes);
}

}  // namespace dsv2
