#include "runtime/cuda/CudaKernelTimer.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "autotune/Device.h"
#include "autotune/Measure.h"
#include "autotune/Workload.h"
#include "codegen/KernelArguments.h"
#include "codegen/KernelEmitter.h"
#include "runtime/cuda/CudaCompiler.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/CudaLaunch.h"

namespace slak::runtime {
namespace {

using autotune::GpuDevice;
using autotune::MeasureOptions;
using autotune::Timing;
using codegen::KernelBuffer;
using codegen::KernelKind;
using codegen::KernelSpec;
using cuda::CudaDriver;
using cuda::CudaError;
using cuda::CudaModule;

using CUresult = int;
using CUdeviceptr = unsigned long long;
using CUevent = struct CUevent_st *;

// Device attributes (cuda.h's CUdevice_attribute values).
constexpr int kMaxThreadsPerBlock = 1, kClockRateKHz = 13, kSmCount = 16, kMemoryClockKHz = 36,
              kBusWidthBits = 37, kL2Bytes = 38, kMaxThreadsPerSm = 39, kSharedPerSm = 81,
              kRegistersPerSm = 82, kSharedPerBlockOptin = 97, kMaxBlocksPerSm = 106;

/// The driver calls the timer needs beyond what CudaDriver wraps.
struct TimerApi {
  CUresult (*deviceGet)(int *, int) = nullptr;
  CUresult (*attribute)(int *, int, int) = nullptr;
  CUresult (*memAlloc)(CUdeviceptr *, size_t) = nullptr;
  CUresult (*memFree)(CUdeviceptr) = nullptr;
  CUresult (*memcpyHtoD)(CUdeviceptr, const void *, size_t) = nullptr;
  CUresult (*memsetD32)(CUdeviceptr, unsigned, size_t) = nullptr;
  CUresult (*eventCreate)(CUevent *, unsigned) = nullptr;
  CUresult (*eventRecord)(CUevent, CUstream) = nullptr;
  CUresult (*eventSynchronize)(CUevent) = nullptr;
  CUresult (*eventElapsed)(float *, CUevent, CUevent) = nullptr;
  CUresult (*eventDestroy)(CUevent) = nullptr;

  explicit TimerApi(const CudaDriver &driver) {
    auto bind = [&](auto &fn, std::initializer_list<const char *> names) {
      for (const char *name : names)
        if (void *p = driver.symbol(name)) {
          fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
          return;
        }
      throw CudaError(std::string("the CUDA driver lacks ") + *names.begin() +
                      " (driver too old? update the NVIDIA driver)");
    };
    bind(deviceGet, {"cuDeviceGet"});
    bind(attribute, {"cuDeviceGetAttribute"});
    bind(memAlloc, {"cuMemAlloc_v2"});
    bind(memFree, {"cuMemFree_v2"});
    bind(memcpyHtoD, {"cuMemcpyHtoD_v2"});
    bind(memsetD32, {"cuMemsetD32_v2"});
    bind(eventCreate, {"cuEventCreate"});
    bind(eventRecord, {"cuEventRecord"});
    bind(eventSynchronize, {"cuEventSynchronize"});
    bind(eventElapsed, {"cuEventElapsedTime_v2", "cuEventElapsedTime"});
    bind(eventDestroy, {"cuEventDestroy_v2", "cuEventDestroy"});
  }
};

/// A device allocation, freed with its owner.
struct DeviceBuffer {
  const TimerApi *api = nullptr;
  CUdeviceptr ptr = 0;
  size_t bytes = 0;
  DeviceBuffer(const TimerApi &a, size_t size, const std::string &what) : api(&a), bytes(size) {
    CudaDriver::get().check(api->memAlloc(&ptr, std::max<size_t>(size, 4)),
                            "cuMemAlloc(" + std::to_string(size) + " bytes for " + what + ")");
  }
  ~DeviceBuffer() {
    if (ptr)
      api->memFree(ptr);
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
};

class CudaKernelTimer final : public autotune::GpuKernelTimer {
public:
  explicit CudaKernelTimer(int device) : device_(device) {
    CudaDriver &driver = CudaDriver::get();
    api_ = std::make_unique<TimerApi>(driver);
    arch_ = driver.computeCapability(device);
    name_ = driver.deviceName(device);
    deviceInfo_ = describe(driver);
  }
  ~CudaKernelTimer() override {
    try {
      CudaDriver::ContextScope scope(device_);
      buffers_.reset();
      modules_.clear();
    } catch (...) {
    }
  }

  GpuDevice device() const override { return deviceInfo_; }

  Timing time(const KernelSpec &spec, const autotune::Workload &workload, KernelKind kind,
              const MeasureOptions &options) override {
    if (std::string err = autotune::checkWorkload(spec, workload); !err.empty())
      throw std::invalid_argument("CUDA timer: " + err);
    const codegen::EmittedKernels kernels = codegen::emitKernels(spec);
    CudaModule &module = moduleFor(kernels);
    CudaDriver &driver = CudaDriver::get();
    CudaDriver::ContextScope scope(device_);
    // Backward-weight times both phases.
    const std::vector<codegen::KernelLaunch> launches =
        codegen::bindPass(kernels, kind, workload.batch, workload.height, workload.width);
    const cuda::DeviceBuffers &buffers = buffersFor(spec, workload, launches);
    auto once = [&] {
      for (const codegen::KernelLaunch &launch : launches)
        cuda::launchBound(module, launch, buffers, nullptr);
    };
    CUevent start = nullptr, stop = nullptr;
    driver.check(api_->eventCreate(&start, 0), "cuEventCreate");
    driver.check(api_->eventCreate(&stop, 0), "cuEventCreate");
    struct Events {
      const TimerApi *api;
      CUevent a, b;
      ~Events() {
        api->eventDestroy(a);
        api->eventDestroy(b);
      }
    } events{api_.get(), start, stop};
    for (int i = 0; i < options.warmup; ++i)
      once();
    driver.synchronize(nullptr);
    Timing t;
    const auto began = std::chrono::steady_clock::now();
    for (int r = 0; r < std::max(1, options.repeats); ++r) {
      driver.check(api_->eventRecord(start, nullptr), "cuEventRecord");
      once();
      driver.check(api_->eventRecord(stop, nullptr), "cuEventRecord");
      driver.check(api_->eventSynchronize(stop), "cuEventSynchronize");
      float ms = 0;
      driver.check(api_->eventElapsed(&ms, start, stop), "cuEventElapsedTime");
      t.samplesMs.push_back(ms);
      const double spent =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
      if (t.samplesMs.size() >= 3 && spent > options.maxSecondsPerKernel)
        break;
    }
    t.medianMs = autotune::median(t.samplesMs);
    return t;
  }

private:
  /// Device buffers of one problem, by KernelBuffer.
  struct Buffers {
    std::array<std::unique_ptr<DeviceBuffer>, codegen::kNumKernelBuffers> owned;
    cuda::DeviceBuffers view;
  };

  GpuDevice describe(CudaDriver &driver) const {
    int dev = 0;
    driver.check(api_->deviceGet(&dev, device_), "cuDeviceGet");
    auto attr = [&](int which) {
      int value = 0;
      driver.check(api_->attribute(&value, which, dev),
                   "cuDeviceGetAttribute(" + std::to_string(which) + ")");
      return value;
    };
    GpuDevice d;
    bool known = false;
    try {
      d = autotune::findGpu(name_);
      known = true;
    } catch (const std::invalid_argument &) {
      d.name = autotune::canonicalGpuName(name_);
      d.family = d.name;
      d.marketingName = name_;
    }
    // What the driver reports wins over the table: a cut-down part or a
    // clock cap changes SM counts and rates.
    d.computeCapability = arch_;
    d.sms = attr(kSmCount);
    d.sharedPerSm = attr(kSharedPerSm);
    d.sharedPerBlock = attr(kSharedPerBlockOptin);
    d.registersPerSm = attr(kRegistersPerSm);
    d.maxThreadsPerSm = attr(kMaxThreadsPerSm);
    d.maxThreadsPerBlock = attr(kMaxThreadsPerBlock);
    d.maxBlocksPerSm = attr(kMaxBlocksPerSm);
    d.l2Bytes = attr(kL2Bytes);
    if (!known) {
      d.fp32LanesPerSm = arch_ >= 86 && arch_ != 87 ? 128 : 64;
      d.boostClockGHz = attr(kClockRateKHz) / 1e6;
      d.fp32Tflops = 2.0 * d.fp32LanesPerSm * d.sms * d.boostClockGHz / 1000.0;
      d.memoryGBs = 2.0 * attr(kMemoryClockKHz) * 1e3 * attr(kBusWidthBits) / 8.0 / 1e9;
      d.l2BytesPerClock = 64.0 * d.sms;
      d.sources = "read from the CUDA driver (" + name_ + "); FP32 lanes per SM guessed from sm_" +
                  std::to_string(arch_);
    } else {
      d.sources += "; SMs, shared memory, registers and L2 read from the CUDA driver";
    }
    return d;
  }

  CudaModule &moduleFor(const codegen::EmittedKernels &kernels) {
    const std::string source = codegen::assembleSource(codegen::GpuLanguage::Cuda, {kernels});
    const std::string key = cuda::cudaImageKey(source, arch_).hex();
    auto it = modules_.find(key);
    if (it != modules_.end())
      return *it->second;
    auto image = cuda::compileCuda(source, "autotune " + kernels.name(KernelKind::Forward), arch_);
    auto module = std::make_unique<CudaModule>(device_, image->image);
    CudaModule &ref = *module;
    modules_.emplace(key, std::move(module));
    return ref;
  }

  /// Device buffers for a spec's problem signature and workload, kept
  /// across candidates and grown where a schedule needs more (the
  /// backward-weight workspace grows with weightSplit). Inputs and weights
  /// hold 1.0, outputs 0, the tap table a random one of the workload's
  /// density.
  const cuda::DeviceBuffers &buffersFor(const KernelSpec &spec, const autotune::Workload &w,
                                        const std::vector<codegen::KernelLaunch> &launches) {
    const std::string key =
        autotune::problemSignature(spec) + " " + w.str() + " seed " + std::to_string(w.seed);
    if (key != buffersKey_) {
      buffers_.reset(); // one problem at a time: keep device memory small
      buffers_ = std::make_unique<Buffers>();
      buffersKey_ = key;
    }
    Buffers &b = *buffers_;
    // 1.0 in every element: f32 0x3f800000, two f16 (0x3c00) or bf16 (0x3f80) per word.
    const unsigned one = spec.elementType == codegen::ElementType::F32   ? 0x3f800000u
                         : spec.elementType == codegen::ElementType::F16 ? 0x3c003c00u
                                                                         : 0x3f803f80u;
    const codegen::KernelBuffers<int64_t> need = codegen::bufferBytes(launches);
    for (int i = 0; i < codegen::kNumKernelBuffers; ++i) {
      const auto which = static_cast<KernelBuffer>(i);
      if (which == KernelBuffer::TapOffsets || which == KernelBuffer::Taps)
        continue;
      if (b.owned[i] && static_cast<int64_t>(b.owned[i]->bytes) >= need[i])
        continue;
      const bool input =
          which == KernelBuffer::X || which == KernelBuffer::Dy || which == KernelBuffer::Weights;
      auto buffer = std::make_unique<DeviceBuffer>(*api_, static_cast<size_t>(need[i]),
                                                   codegen::kernelBufferName(which));
      const size_t words = (buffer->bytes + 3) / 4;
      CudaDriver::get().check(api_->memsetD32(buffer->ptr, input ? one : 0u, words), "cuMemsetD32");
      b.view.set(which, reinterpret_cast<void *>(buffer->ptr),
                 static_cast<int64_t>(std::max<size_t>(buffer->bytes, 4)));
      b.owned[i] = std::move(buffer);
    }
    if (!b.owned[static_cast<int>(KernelBuffer::TapOffsets)]) {
      const codegen::TapTable table = autotune::randomTapTable(spec, w.density, w.seed);
      auto upload = [&](KernelBuffer which, const std::vector<int32_t> &values) {
        auto buffer = std::make_unique<DeviceBuffer>(*api_, values.size() * 4,
                                                     codegen::kernelBufferName(which));
        if (!values.empty())
          CudaDriver::get().check(api_->memcpyHtoD(buffer->ptr, values.data(), values.size() * 4),
                                  std::string("cuMemcpyHtoD(") + codegen::kernelBufferName(which) +
                                      ")");
        b.view.set(which, reinterpret_cast<void *>(buffer->ptr),
                   static_cast<int64_t>(std::max<size_t>(buffer->bytes, 4)));
        b.owned[static_cast<int>(which)] = std::move(buffer);
      };
      upload(KernelBuffer::TapOffsets, table.offsets);
      upload(KernelBuffer::Taps, table.taps);
    }
    return b.view;
  }

  int device_ = 0;
  int arch_ = 0;
  std::string name_;
  GpuDevice deviceInfo_;
  std::unique_ptr<TimerApi> api_;
  std::map<std::string, std::unique_ptr<CudaModule>> modules_;
  std::string buffersKey_;
  std::unique_ptr<Buffers> buffers_;
};

} // namespace

void registerCudaKernelTimer() {
  autotune::setGpuTimerFactory([]() -> std::unique_ptr<autotune::GpuKernelTimer> {
    std::string why;
    if (!CudaDriver::available(&why))
      throw autotune::MeasurementUnavailable(
          "no CUDA device: " + why +
          ". --gpu local measures on this machine's NVIDIA GPU; tune for a named GPU with the "
          "model instead (--gpu a100, --gpu h100, ...; see --list-gpus)");
    try {
      return std::make_unique<CudaKernelTimer>(0);
    } catch (const std::exception &e) {
      throw autotune::MeasurementUnavailable(std::string("cannot time kernels on CUDA device 0: ") +
                                             e.what());
    }
  });
}

} // namespace slak::runtime
