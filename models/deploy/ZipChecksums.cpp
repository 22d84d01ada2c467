#include "models/deploy/ZipChecksums.h"

#include <caffe2/serialize/inline_container.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace slak::models {
namespace {

uint64_t little(const unsigned char *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}

std::string hex32(uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof text, "%08x", v);
  return text;
}

std::vector<unsigned char> readAt(std::ifstream &in, uint64_t offset, uint64_t size) {
  std::vector<unsigned char> bytes(size);
  in.clear();
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(reinterpret_cast<char *>(bytes.data()), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(in.gcount()) != size)
    throw std::runtime_error("its zip directory lies past the end of the file (truncated?)");
  return bytes;
}

} // namespace

ZipChecksums::ZipChecksums(const std::string &path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in)
    throw std::runtime_error("cannot be opened");
  const uint64_t fileSize = static_cast<uint64_t>(in.tellg());
  // The end-of-central-directory record: 22 bytes plus a comment of up to
  // 65535 bytes at the end of the file.
  const uint64_t tailSize = std::min<uint64_t>(fileSize, 22 + 65535 + 20);
  const std::vector<unsigned char> tail = readAt(in, fileSize - tailSize, tailSize);
  int64_t eocd = -1;
  for (int64_t i = static_cast<int64_t>(tailSize) - 22; i >= 0; --i)
    if (tail[i] == 'P' && tail[i + 1] == 'K' && tail[i + 2] == 5 && tail[i + 3] == 6) {
      eocd = i;
      break;
    }
  if (eocd < 0)
    throw std::runtime_error("it has no zip directory at its end (truncated?)");
  uint64_t entries = little(&tail[eocd + 10], 2);
  uint64_t cdSize = little(&tail[eocd + 12], 4);
  uint64_t cdOffset = little(&tail[eocd + 16], 4);
  if ((entries == 0xffff || cdSize == 0xffffffff || cdOffset == 0xffffffff) && eocd >= 20 &&
      tail[eocd - 20] == 'P' && tail[eocd - 19] == 'K' && tail[eocd - 18] == 6 &&
      tail[eocd - 17] == 7) {
    // Zip64: the locator points at the zip64 end-of-central-directory record.
    const std::vector<unsigned char> z = readAt(in, little(&tail[eocd - 20 + 8], 8), 56);
    if (!(z[0] == 'P' && z[1] == 'K' && z[2] == 6 && z[3] == 6))
      throw std::runtime_error("its zip64 directory record is damaged");
    entries = little(&z[32], 8);
    cdSize = little(&z[40], 8);
    cdOffset = little(&z[48], 8);
  }
  if (cdOffset > fileSize || cdSize > fileSize - cdOffset)
    throw std::runtime_error("its zip directory lies past the end of the file (truncated?)");
  const std::vector<unsigned char> cd = readAt(in, cdOffset, cdSize);
  size_t at = 0;
  for (uint64_t k = 0; k < entries; ++k) {
    if (at + 46 > cd.size() ||
        !(cd[at] == 'P' && cd[at + 1] == 'K' && cd[at + 2] == 1 && cd[at + 3] == 2))
      throw std::runtime_error("its zip directory is damaged at entry " + std::to_string(k));
    const uint32_t crc = static_cast<uint32_t>(little(&cd[at + 16], 4));
    const size_t nameLength = little(&cd[at + 28], 2), extra = little(&cd[at + 30], 2),
                 comment = little(&cd[at + 32], 2);
    if (at + 46 + nameLength > cd.size())
      throw std::runtime_error("its zip directory is damaged at entry " + std::to_string(k));
    std::string name(reinterpret_cast<const char *>(&cd[at + 46]), nameLength);
    // PyTorch archives keep every record under one top folder ("archive/",
    // "checkpoint.pt/"); PyTorchStreamReader names records without it.
    name = name.substr(name.find('/') + 1);
    crcs_[name] = crc;
    at += 46 + nameLength + extra + comment;
  }
}

std::string ZipChecksums::check(const std::string &record, const void *data, size_t size) const {
  auto it = crcs_.find(record);
  if (it == crcs_.end())
    return "record " + record + " is not in the zip directory";
  const uint32_t crc =
      static_cast<uint32_t>(crc32_z(crc32_z(0, Z_NULL, 0), static_cast<const Bytef *>(data), size));
  if (crc != it->second)
    return "record " + record + " (" + std::to_string(size) + " bytes) has CRC-32 " + hex32(crc) +
           ", the zip directory records " + hex32(it->second) +
           " (the file was damaged after it was written)";
  return "";
}

void checkPyTorchArchive(const std::string &path) {
  const ZipChecksums checksums(path);
  caffe2::serialize::PyTorchStreamReader reader(path);
  for (const std::string &record : reader.getAllRecords()) {
    auto [data, size] = reader.getRecord(record);
    if (std::string error = checksums.check(record, data.get(), size); !error.empty())
      throw std::runtime_error(error);
  }
}

} // namespace slak::models
