// Png: 8-bit RGB images in memory and their PNG files, through libpng's
// simplified API. Writes go to <path>.tmp and are renamed over <path>, so a
// reader never sees half a file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slak::analysis {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb &o) const { return r == o.r && g == o.g && b == o.b; }
};

/// Row-major, top row first, 3 bytes per pixel.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;

  RgbImage() = default;
  RgbImage(int width, int height, Rgb fill = {});
  Rgb at(int x, int y) const;
  /// Ignores pixels outside the image (text and panels may be clipped).
  void set(int x, int y, Rgb colour);
  void fillRect(int x, int y, int w, int h, Rgb colour);
  /// Copies `src` with its top-left corner at (x, y), clipped.
  void blit(const RgbImage &src, int x, int y);
};

/// Throws std::runtime_error naming the path and libpng's message.
void writePng(const std::string &path, const RgbImage &image);
/// Any PNG, converted to 8-bit RGB. Throws std::runtime_error on failure.
RgbImage readPng(const std::string &path);

} // namespace slak::analysis
