// Distributed: multi-process data parallel training through PyTorch's c10d
// process groups: a TCPStore for the rendezvous, ProcessGroupGloo on the CPU
// and ProcessGroupNCCL on CUDA devices (where built in). Header free of c10d,
// so the trainer and tools include it cheaply.
//
// The rank set comes from torchrun's environment (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or from flags; slak-train --nproc N
// launches N local ranks itself (launchLocalRanks).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace slak::train {

struct DistributedOptions {
  int rank = 0;
  int worldSize = 1;
  int localRank = 0; // picks cuda:<localRank> when the device is plain "cuda"
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  double timeoutSeconds = 600; // a collective waiting longer than this fails

  bool enabled() const { return worldSize > 1; }
};

/// Fills the fields whose torchrun variables are set (RANK, WORLD_SIZE,
/// LOCAL_RANK, MASTER_ADDR, MASTER_PORT) into `defaults`; a malformed value
/// is a std::invalid_argument naming the variable.
DistributedOptions distributedFromEnvironment(DistributedOptions defaults);

/// Throws std::invalid_argument for an impossible rank set (rank outside
/// [0, worldSize), port outside 1..65535, ...), naming the value and the fix.
void validate(const DistributedOptions &options);

/// Whether this build can run several ranks (false without libgloo-dev's
/// headers at build time), and which backends it has ("gloo", "gloo, nccl").
bool distributedAvailable();
std::string distributedBackends();

/// One process group over all ranks. With worldSize 1 every collective is a
/// no-op, so the trainer's code is the same for one and many processes.
class ProcessGroup {
public:
  /// Connects to the rank set (rank 0 hosts the TCPStore at masterAddr:
  /// masterPort): Gloo for CPU tensors, NCCL for CUDA tensors.
  ProcessGroup(const DistributedOptions &options, const torch::Device &device);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup &) = delete;
  ProcessGroup &operator=(const ProcessGroup &) = delete;

  int rank() const { return options_.rank; }
  int size() const { return options_.worldSize; }
  bool isRoot() const { return options_.rank == 0; }
  const std::string &backendName() const { return backendName_; }

  /// In place, on every rank. Tensors may live on any device: they travel
  /// through the backend's device (CPU for Gloo, the rank's GPU for NCCL).
  void allreduceSum(torch::Tensor &t);
  void allreduceMin(torch::Tensor &t);
  void allreduceMax(torch::Tensor &t);
  /// Replaces `t` by rank `root`'s tensor (same shape and dtype everywhere).
  void broadcast(torch::Tensor &t, int root = 0);
  /// Every rank's `t` (same shape and dtype everywhere), by rank.
  std::vector<torch::Tensor> allgather(const torch::Tensor &t);
  void barrier();
  /// Element-wise sums over the ranks (metrics, counts).
  std::vector<double> sum(const std::vector<double> &values);

  /// Fails loudly when ranks disagree: `values` is a float64 vector of
  /// checksums, the same length on every rank; entry i names[i]. Throws
  /// std::runtime_error naming the entries whose minimum and maximum over the
  /// ranks differ, with `what` saying when ("after the mask update at step 200").
  void requireIdentical(const torch::Tensor &values, const std::vector<std::string> &names,
                        const std::string &what);

private:
  struct Impl;
  DistributedOptions options_;
  std::string backendName_ = "none";
  torch::Device commDevice_{torch::kCPU};
  std::unique_ptr<Impl> impl_;
};

/// Averages the gradients of `parameters` over the ranks with one allreduce
/// of a flat buffer (one bucket), plus `extras` (summed, not averaged) in the
/// same message: the trainer sends its loss and accuracy sums there. A
/// parameter without a gradient counts as a zero gradient.
class GradientBucket {
public:
  GradientBucket(std::vector<torch::Tensor> parameters, int64_t extras);
  /// Returns the extras summed over the ranks.
  std::vector<double> allreduce(ProcessGroup &group, const std::vector<double> &extras);

private:
  std::vector<torch::Tensor> parameters_;
  int64_t extras_ = 0;
  int64_t numel_ = 0;
  torch::Tensor flat_;
};

/// Runs `nproc` copies of this executable (argv with --nproc and its value
/// removed) as ranks 0..nproc-1 over loopback, with torchrun's variables set,
/// and waits. A rank that fails (non-zero exit or signal) stops the others
/// (SIGTERM, then SIGKILL after 10 s); the result is the first failing
/// rank's exit code (128 + signal for a signal), 0 when all succeed.
/// `masterPort` 0 picks a free port.
int launchLocalRanks(int argc, char **argv, int nproc, int masterPort);

} // namespace slak::train
