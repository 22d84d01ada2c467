// ZipChecksums: the CRC-32 of every record of a PyTorch zip archive
// (torch.save, torch::save), read from the archive's central directory and
// compared with the records' bytes. LibTorch's bundled miniz skips this check
// when it reads a record, so a checkpoint damaged after it was written (a bad
// copy, a flipped disk block) would otherwise load with wrong weights and no
// error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace slak::models {

class ZipChecksums {
public:
  /// Reads the central directory of the zip archive `path`. Throws
  /// std::runtime_error ("its zip directory ...: truncated or corrupt") when
  /// it cannot be found or read.
  explicit ZipChecksums(const std::string &path);

  /// "" when `record` (a name inside the archive's top folder, as
  /// PyTorchStreamReader names them: "data.pkl", "data/0") holds `size`
  /// bytes whose CRC-32 is the recorded one, else what differs.
  std::string check(const std::string &record, const void *data, size_t size) const;

  size_t size() const { return crcs_.size(); }

private:
  std::map<std::string, uint32_t> crcs_; // by record name
};

/// Reads every record of the PyTorch zip archive `path` and checks it
/// against its CRC-32. Throws std::runtime_error "record R ... (the file was
/// damaged after it was written)" for the first record that differs.
void checkPyTorchArchive(const std::string &path);

} // namespace slak::models
