#include "models/analysis/Png.h"

#include <png.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace slak::analysis {

RgbImage::RgbImage(int width, int height, Rgb fill) : width(width), height(height) {
  if (width <= 0 || height <= 0)
    throw std::invalid_argument("image size " + std::to_string(width) + "x" +
                                std::to_string(height) + " is not positive");
  pixels.resize(static_cast<size_t>(width) * height * 3);
  fillRect(0, 0, width, height, fill);
}

Rgb RgbImage::at(int x, int y) const {
  const size_t i = (static_cast<size_t>(y) * width + x) * 3;
  return {pixels[i], pixels[i + 1], pixels[i + 2]};
}

void RgbImage::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width || y >= height)
    return;
  const size_t i = (static_cast<size_t>(y) * width + x) * 3;
  pixels[i] = c.r;
  pixels[i + 1] = c.g;
  pixels[i + 2] = c.b;
}

void RgbImage::fillRect(int x, int y, int w, int h, Rgb c) {
  for (int yy = y; yy < y + h; ++yy)
    for (int xx = x; xx < x + w; ++xx)
      set(xx, yy, c);
}

void RgbImage::blit(const RgbImage &src, int x, int y) {
  for (int yy = 0; yy < src.height; ++yy)
    for (int xx = 0; xx < src.width; ++xx)
      set(x + xx, y + yy, src.at(xx, yy));
}

void writePng(const std::string &path, const RgbImage &image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3)
    throw std::invalid_argument("cannot write " + path + ": the image is empty or malformed");
  if (auto dir = std::filesystem::path(path).parent_path(); !dir.empty())
    std::filesystem::create_directories(dir);
  const std::string tmp = path + ".tmp";
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&png, tmp.c_str(), /*convert_to_8bit=*/0, image.pixels.data(),
                               /*row_stride=*/0, /*colormap=*/nullptr)) {
    std::string message = png.message;
    png_image_free(&png);
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot write PNG " + path + ": " + message);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + ec.message());
}

RgbImage readPng(const std::string &path) {
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) {
    std::string message = png.message;
    png_image_free(&png);
    throw std::runtime_error("cannot read PNG " + path + ": " + message);
  }
  png.format = PNG_FORMAT_RGB;
  RgbImage out;
  out.width = static_cast<int>(png.width);
  out.height = static_cast<int>(png.height);
  out.pixels.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, /*background=*/nullptr, out.pixels.data(), /*row_stride=*/0,
                             /*colormap=*/nullptr)) {
    std::string message = png.message;
    png_image_free(&png);
    throw std::runtime_error("cannot read PNG " + path + ": " + message);
  }
  return out;
}

} // namespace slak::analysis
