// The NCCL backend of ProcessGroup (Distributed.cpp), in its own file because
// ProcessGroupNCCL.hpp needs the CUDA and NCCL headers. Built where those
// headers and LibTorch's CUDA library are found; runs only on CUDA devices.
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>

namespace slak::train {

c10::intrusive_ptr<c10d::Backend> makeNcclBackend(const c10::intrusive_ptr<c10d::Store> &store,
                                                  int rank, int size,
                                                  std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
}

} // namespace slak::train
