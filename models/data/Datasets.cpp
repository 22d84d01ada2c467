#include "models/data/Datasets.h"

#include "codegen/FileKind.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace slak::data {

namespace {

/// What to do about a damaged or wrong data set file.
std::string datasetFix(const std::string &path) {
  return "; reinstall the data set (apt-get install --reinstall dataset-fashion-mnist) or point "
         "--data-dir at a folder with intact copies of " +
         std::filesystem::path(path).filename().string();
}

std::vector<uint8_t> readGzip(const std::string &path) {
  if (!std::filesystem::exists(path))
    throw std::runtime_error("Fashion-MNIST file " + path +
                             " not found: install Debian's dataset-fashion-mnist "
                             "(apt-get install dataset-fashion-mnist) or pass --data-dir");
  const std::string kind = codegen::describeFileKind(path);
  // gzopen reads an uncompressed IDX file as it is; anything else is wrong.
  if (kind != "a gzip file" && kind.rfind("an IDX data file", 0) != 0 && !kind.empty())
    throw std::runtime_error("Fashion-MNIST file " + path + " is " + kind +
                             ", not a gzip-compressed IDX file" + datasetFix(path));
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file)
    throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  std::vector<uint8_t> out;
  uint8_t buffer[1 << 16];
  int n;
  while ((n = gzread(file, buffer, sizeof(buffer))) > 0)
    out.insert(out.end(), buffer, buffer + n);
  int error = Z_OK;
  std::string why = gzerror(file, &error);
  if (why.rfind(path + ": ", 0) == 0) // zlib names the file too
    why.erase(0, path.size() + 2);
  gzclose(file);
  // At a premature end of the compressed stream gzread returns what it had
  // and reports Z_BUF_ERROR: a truncated file.
  if (n < 0 || (error != Z_OK && error != Z_STREAM_END))
    throw std::runtime_error(
        "Fashion-MNIST file " + path + " is " + (error == Z_BUF_ERROR ? "truncated" : "corrupt") +
        " (zlib: " + why + ", after " + std::to_string(out.size()) + " bytes)" + datasetFix(path));
  return out;
}

uint32_t bigEndian32(const std::vector<uint8_t> &bytes, size_t offset) {
  return (uint32_t(bytes[offset]) << 24) | (uint32_t(bytes[offset + 1]) << 16) |
         (uint32_t(bytes[offset + 2]) << 8) | uint32_t(bytes[offset + 3]);
}

/// An IDX file of unsigned bytes: returns the dims, leaves the data offset.
std::vector<int64_t> idxHeader(const std::vector<uint8_t> &bytes, const std::string &path,
                               int expectedRank, size_t &dataOffset) {
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08)
    throw std::runtime_error(path + ": not an IDX file of unsigned bytes (magic 0x0000 08xx)" +
                             datasetFix(path));
  int rank = bytes[3];
  if (rank != expectedRank)
    throw std::runtime_error(path + ": IDX rank " + std::to_string(rank) + ", expected " +
                             std::to_string(expectedRank) + " (" +
                             (expectedRank == 3 ? "images" : "labels") + ")" + datasetFix(path));
  if (bytes.size() < 4 + 4 * size_t(rank))
    throw std::runtime_error(path + ": truncated IDX header" + datasetFix(path));
  std::vector<int64_t> dims;
  unsigned __int128 total = 1; // (three 32-bit dims do not overflow it)
  for (int i = 0; i < rank; ++i) {
    dims.push_back(bigEndian32(bytes, 4 + 4 * i));
    total *= uint64_t(dims.back());
  }
  dataOffset = 4 + 4 * size_t(rank);
  if (bytes.size() - dataOffset != total)
    throw std::runtime_error(path + ": " + std::to_string(bytes.size() - dataOffset) +
                             " data bytes, the header promises " +
                             (total >> 64 ? std::string("more than 2^64")
                                          : std::to_string(static_cast<uint64_t>(total))) +
                             datasetFix(path));
  return dims;
}

} // namespace

Dataset loadFashionMnist(const std::string &dir, bool train) {
  const std::string prefix = dir + "/" + (train ? "train" : "t10k");
  const std::string imagesPath = prefix + "-images-idx3-ubyte.gz";
  const std::string labelsPath = prefix + "-labels-idx1-ubyte.gz";
  auto imageBytes = readGzip(imagesPath);
  auto labelBytes = readGzip(labelsPath);
  size_t imageOffset = 0, labelOffset = 0;
  auto imageDims = idxHeader(imageBytes, imagesPath, 3, imageOffset);
  auto labelDims = idxHeader(labelBytes, labelsPath, 1, labelOffset);
  if (imageDims[0] != labelDims[0])
    throw std::runtime_error(imagesPath + " has " + std::to_string(imageDims[0]) + " images but " +
                             labelsPath + " has " + std::to_string(labelDims[0]) + " labels" +
                             datasetFix(labelsPath));
  if (imageDims[0] == 0)
    throw std::runtime_error(imagesPath + " holds no images" + datasetFix(imagesPath));

  Dataset d;
  d.name = train ? "fashion-mnist/train" : "fashion-mnist/test";
  d.numClasses = 10;
  auto raw = torch::from_blob(imageBytes.data() + imageOffset,
                              {imageDims[0], 1, imageDims[1], imageDims[2]}, torch::kUInt8);
  d.images = raw.to(torch::kFloat32).div_(255.0).sub_(0.2860).div_(0.3530);
  d.labels = torch::from_blob(labelBytes.data() + labelOffset, {labelDims[0]}, torch::kUInt8)
                 .to(torch::kInt64);
  int64_t maxLabel = d.labels.max().item<int64_t>();
  if (maxLabel >= d.numClasses)
    throw std::runtime_error(labelsPath + ": label " + std::to_string(maxLabel) + " outside 0..9" +
                             datasetFix(labelsPath));
  return d;
}

Dataset makeSynthetic(const SyntheticOptions &o, int split) {
  torch::NoGradGuard noGrad;
  auto templateGen = at::detail::createCPUGenerator(o.seed);
  auto sampleGen = at::detail::createCPUGenerator(o.seed * 7919 + 1 + static_cast<uint64_t>(split));
  // Smooth templates: low-resolution noise upsampled bilinearly.
  auto coarse = torch::randn({o.numClasses, o.channels, 4, 4}, templateGen);
  auto templates =
      torch::nn::functional::interpolate(coarse, torch::nn::functional::InterpolateFuncOptions()
                                                     .size(std::vector<int64_t>{o.height, o.width})
                                                     .mode(torch::kBilinear)
                                                     .align_corners(false));

  Dataset d;
  d.name = split == 0 ? "synthetic/train" : "synthetic/test";
  d.numClasses = o.numClasses;
  d.labels = torch::randint(o.numClasses, {o.size}, sampleGen, torch::kInt64);
  d.images = templates.index_select(0, d.labels).contiguous();
  auto shifts = torch::randint(-2, 3, {o.size, 2}, sampleGen, torch::kInt64);
  auto shiftsAcc = shifts.accessor<int64_t, 2>();
  for (int64_t i = 0; i < o.size; ++i)
    d.images[i] = d.images[i].roll({shiftsAcc[i][0], shiftsAcc[i][1]}, {1, 2});
  d.images.add_(torch::randn(d.images.sizes(), sampleGen) * o.noise);
  return d;
}

Batch gather(const Dataset &d, const torch::Tensor &indices) {
  return {d.images.index_select(0, indices), d.labels.index_select(0, indices)};
}

} // namespace slak::data
