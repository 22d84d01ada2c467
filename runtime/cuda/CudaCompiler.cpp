#include "runtime/cuda/CudaCompiler.h"

#include <cstring>

#include "runtime/Log.h"

namespace slak::runtime::cuda {
namespace {

// Cache payload: one byte (1 = cubin, 0 = PTX), the target arch as 4 bytes
// little-endian, then the image.
std::string encode(const NvrtcImage &image) {
  std::string out(5, '\0');
  out[0] = image.cubin ? 1 : 0;
  for (int i = 0; i < 4; ++i)
    out[1 + i] = static_cast<char>((static_cast<uint32_t>(image.arch) >> (8 * i)) & 0xff);
  return out + image.image;
}

std::shared_ptr<const NvrtcImage> decode(const std::string &payload) {
  auto image = std::make_shared<NvrtcImage>();
  if (payload.size() < 5)
    throw CudaError("a cached CUDA image is shorter than its own header");
  image->cubin = payload[0] == 1;
  uint32_t arch = 0;
  for (int i = 0; i < 4; ++i)
    arch |= static_cast<uint32_t>(static_cast<unsigned char>(payload[1 + i])) << (8 * i);
  image->arch = static_cast<int>(arch);
  image->image = payload.substr(5);
  return image;
}

} // namespace

const std::vector<std::string> &defaultNvrtcOptions() {
  // No fast-math: the kernels must match the oracle's IEEE results.
  static const std::vector<std::string> options = {"--std=c++17"};
  return options;
}

CacheKey cudaImageKey(const std::string &source, int arch) {
  const Nvrtc &nvrtc = Nvrtc::get();
  std::string options;
  for (const std::string &o : defaultNvrtcOptions())
    options += o + " ";
  options += nvrtc.architectureOption(arch);
  return CacheKeyBuilder()
      .add("what", "cuda-image")
      .add("runtime", kRuntimeVersion)
      .add("nvrtc", nvrtc.versionString())
      .add("arch", arch)
      .add("options", options)
      .add("source", source)
      .finish();
}

std::shared_ptr<const NvrtcImage> compileCuda(const std::string &source, const std::string &name,
                                              int arch, KernelCache &cache) {
  const CacheKey key = cudaImageKey(source, arch);
  std::shared_ptr<const std::string> payload = cache.getOrBuild("cuda", key, [&] {
    NvrtcImage image = Nvrtc::get().compile(source, name, arch, defaultNvrtcOptions());
    if (!image.log.empty())
      logMessage("NVRTC messages for " + name + ":\n" + image.log);
    return encode(image);
  });
  return decode(*payload);
}

} // namespace slak::runtime::cuda
