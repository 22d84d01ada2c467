// CudaKernelTimer: the autotuner's GpuKernelTimer (autotune/Measure.h) on
// the local GPU through the runtime's dlopen'ed CUDA driver and NVRTC: the
// emitted kernels of each candidate schedule are compiled (KernelCache),
// run on device buffers (random tap table of the workload's density) and
// timed with CUDA events after warm-up runs; the median of the repeats
// counts. LibTorch-free, so slak-autotune links it without LibTorch.
#pragma once

namespace slak::runtime {

/// Registers the CUDA timer with autotune::setGpuTimerFactory. Opening a
/// timer (slak-autotune --gpu local) then throws MeasurementUnavailable
/// "no CUDA device: ..." where the driver or a device is missing.
void registerCudaKernelTimer();

} // namespace slak::runtime
