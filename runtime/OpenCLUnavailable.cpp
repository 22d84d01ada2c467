// The OpenCL backend factory of a build without OpenCL: resolveBackend
// refuses "opencl" first, so this only guards direct calls.
#include <c10/util/Exception.h>

#include "runtime/LkConvBackend.h"

namespace slak::runtime {

bool openclDeviceAvailable() { return false; }

std::shared_ptr<LkConvKernel> makeOpenCLKernel(const GpuKernelSource &) {
  TORCH_CHECK(false, "slak: this build has no OpenCL backend (configure with "
                     "-DSLAK_WITH_OPENCL=ON; apt-get install ocl-icd-opencl-dev pocl-opencl-icd)");
}

} // namespace slak::runtime
