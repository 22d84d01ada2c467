#include "models/train/Distributed.h"

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef SLAK_MODELS_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/torch.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

extern char **environ;

namespace slak::train {

#ifdef SLAK_MODELS_WITH_NCCL
// DistributedNccl.cpp: kept apart because ProcessGroupNCCL.hpp needs the CUDA
// and NCCL headers.
c10::intrusive_ptr<c10d::Backend> makeNcclBackend(const c10::intrusive_ptr<c10d::Store> &store,
                                                  int rank, int size,
                                                  std::chrono::milliseconds timeout);
#endif

namespace {

int parseEnvInt(const char *name, int fallback) {
  const char *text = std::getenv(name);
  if (!text || !*text)
    return fallback;
  char *end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (*end != '\0' || v < 0 || v > 1000000)
    throw std::invalid_argument(std::string("environment variable ") + name + "='" + text +
                                "' is not a non-negative integer");
  return static_cast<int>(v);
}

/// c10 errors without their C++ backtrace.
std::string message(const std::exception &e) {
  if (const auto *c10 = dynamic_cast<const c10::Error *>(&e))
    return c10->what_without_backtrace();
  return e.what();
}

bool isLoopback(const std::string &addr) {
  return addr == "127.0.0.1" || addr == "localhost" || addr == "::1";
}

} // namespace

DistributedOptions distributedFromEnvironment(DistributedOptions o) {
  o.rank = parseEnvInt("RANK", o.rank);
  o.worldSize = parseEnvInt("WORLD_SIZE", o.worldSize);
  o.localRank = parseEnvInt("LOCAL_RANK", o.localRank);
  o.masterPort = parseEnvInt("MASTER_PORT", o.masterPort);
  if (const char *addr = std::getenv("MASTER_ADDR"); addr && *addr)
    o.masterAddr = addr;
  return o;
}

void validate(const DistributedOptions &o) {
  if (o.worldSize < 1)
    throw std::invalid_argument("world size " + std::to_string(o.worldSize) +
                                " is not positive: set --world-size (or WORLD_SIZE) to the "
                                "number of ranks");
  if (o.rank < 0 || o.rank >= o.worldSize)
    throw std::invalid_argument("rank " + std::to_string(o.rank) + " is outside [0, " +
                                std::to_string(o.worldSize) +
                                "): give each process a distinct --rank (or RANK) below "
                                "--world-size");
  if (o.masterPort < 1 || o.masterPort > 65535)
    throw std::invalid_argument("master port " + std::to_string(o.masterPort) +
                                " is outside 1..65535: set --master-port (or MASTER_PORT)");
  if (o.masterAddr.empty())
    throw std::invalid_argument("empty master address: set --master-addr (or MASTER_ADDR) to "
                                "rank 0's host");
  if (!(o.timeoutSeconds > 0))
    throw std::invalid_argument("--dist-timeout " + std::to_string(o.timeoutSeconds) +
                                " must be positive (seconds)");
}

bool distributedAvailable() {
#ifdef SLAK_MODELS_WITH_GLOO
  return true;
#else
  return false;
#endif
}

std::string distributedBackends() {
  std::string out;
#ifdef SLAK_MODELS_WITH_GLOO
  out += "gloo";
#endif
#ifdef SLAK_MODELS_WITH_NCCL
  out += out.empty() ? "nccl" : ", nccl";
#endif
  return out.empty() ? "none" : out;
}

// ------------------------------------------------------------ ProcessGroup

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};

ProcessGroup::ProcessGroup(const DistributedOptions &options, const torch::Device &device)
    : options_(options) {
  validate(options_);
  if (!options_.enabled())
    return;
  impl_ = std::make_unique<Impl>();
  const auto timeout =
      std::chrono::milliseconds(static_cast<int64_t>(options_.timeoutSeconds * 1000.0 + 0.5));
  const std::string where = options_.masterAddr + ":" + std::to_string(options_.masterPort);
  try {
    c10d::TCPStoreOptions storeOptions;
    storeOptions.port = static_cast<uint16_t>(options_.masterPort);
    storeOptions.isServer = options_.rank == 0;
    storeOptions.numWorkers = static_cast<size_t>(options_.worldSize);
    storeOptions.waitWorkers = true;
    storeOptions.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(options_.masterAddr, storeOptions);
  } catch (const std::exception &e) {
    throw std::runtime_error(
        "rank " + std::to_string(options_.rank) + " of " + std::to_string(options_.worldSize) +
        ": the rendezvous at " + where + " failed (" + message(e) +
        "); check that every rank has the same --master-addr/--master-port (MASTER_ADDR/"
        "MASTER_PORT), that rank 0 runs and the port is free, or raise --dist-timeout");
  }
  if (device.is_cuda()) {
#ifdef SLAK_MODELS_WITH_NCCL
    impl_->backend = makeNcclBackend(impl_->store, options_.rank, options_.worldSize, timeout);
    backendName_ = "nccl";
    commDevice_ = device;
#else
    throw std::runtime_error("--device " + device.str() +
                             " with several ranks needs NCCL, which this build lacks "
                             "(ProcessGroupNCCL did not build here); train on --device cpu "
                             "(Gloo) or rebuild with the CUDA toolkit and NCCL headers");
#endif
  } else {
#ifdef SLAK_MODELS_WITH_GLOO
    auto gloo = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char *iface = std::getenv("GLOO_SOCKET_IFNAME"); iface && *iface)
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
    else if (isLoopback(options_.masterAddr))
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    gloo->threads = 1; // the trainer waits for each collective
    try {
      impl_->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, options_.rank,
                                                                   options_.worldSize, gloo);
    } catch (const std::exception &e) {
      throw std::runtime_error("rank " + std::to_string(options_.rank) +
                               ": connecting the Gloo process group (store at " + where +
                               ") failed: " + message(e));
    }
    backendName_ = "gloo";
#else
    throw std::runtime_error(
        "this build has no multi-process training: Gloo's headers were missing when it was "
        "built; apt-get install libgloo-dev and rebuild, or run one process (WORLD_SIZE=1)");
#endif
  }
}

ProcessGroup::~ProcessGroup() = default;

namespace {
/// A failed collective says which rank and operation, and where to look.
[[noreturn]] void collectiveFailed(int rank, const char *op, const std::exception &e) {
  throw std::runtime_error("rank " + std::to_string(rank) + ": " + op + " failed (" + message(e) +
                           "); another rank has probably failed or been stopped: see its "
                           "error, or raise --dist-timeout if it is only slow");
}

/// Runs `collective` on `t`, or on a contiguous copy on `device` written back.
template <typename F>
void onDevice(torch::Tensor &t, const torch::Device &device, int rank, const char *op,
              F collective) {
  torch::NoGradGuard noGrad;
  try {
    if (t.device() == device && t.is_contiguous()) {
      std::vector<at::Tensor> tensors{t};
      collective(tensors);
      return;
    }
    std::vector<at::Tensor> tensors{t.to(device).contiguous()};
    collective(tensors);
    t.copy_(tensors[0]);
  } catch (const std::exception &e) {
    collectiveFailed(rank, op, e);
  }
}

/// Replaces `t` with `op` over every rank's `t`.
void allreduce(c10d::Backend &backend, torch::Tensor &t, const torch::Device &device, int rank,
               c10d::ReduceOp op) {
  onDevice(t, device, rank, "allreduce", [&](std::vector<at::Tensor> &ts) {
    c10d::AllreduceOptions o;
    o.reduceOp = op;
    backend.allreduce(ts, o)->wait();
  });
}
} // namespace

void ProcessGroup::allreduceSum(torch::Tensor &t) {
  if (impl_)
    allreduce(*impl_->backend, t, commDevice_, rank(), c10d::ReduceOp::SUM);
}

void ProcessGroup::allreduceMin(torch::Tensor &t) {
  if (impl_)
    allreduce(*impl_->backend, t, commDevice_, rank(), c10d::ReduceOp::MIN);
}

void ProcessGroup::allreduceMax(torch::Tensor &t) {
  if (impl_)
    allreduce(*impl_->backend, t, commDevice_, rank(), c10d::ReduceOp::MAX);
}

void ProcessGroup::broadcast(torch::Tensor &t, int root) {
  if (!impl_)
    return;
  onDevice(t, commDevice_, rank(), "broadcast", [&](std::vector<at::Tensor> &ts) {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    impl_->backend->broadcast(ts, o)->wait();
  });
}

std::vector<double> ProcessGroup::sum(const std::vector<double> &values) {
  if (!impl_ || values.empty())
    return values;
  auto t = torch::tensor(values, torch::kFloat64);
  allreduceSum(t);
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

std::vector<torch::Tensor> ProcessGroup::allgather(const torch::Tensor &t) {
  if (!impl_)
    return {t.clone()};
  auto input = t.to(commDevice_).contiguous();
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < size(); ++r)
    outputs[0].push_back(torch::empty_like(input));
  std::vector<at::Tensor> inputs{input};
  try {
    impl_->backend->allgather(outputs, inputs)->wait();
  } catch (const std::exception &e) {
    collectiveFailed(rank(), "allgather", e);
  }
  for (auto &o : outputs[0])
    o = o.to(t.device());
  return outputs[0];
}

void ProcessGroup::barrier() {
  if (!impl_)
    return;
  try {
    impl_->backend->barrier()->wait();
  } catch (const std::exception &e) {
    collectiveFailed(rank(), "barrier", e);
  }
}

void ProcessGroup::requireIdentical(const torch::Tensor &values,
                                    const std::vector<std::string> &names,
                                    const std::string &what) {
  if (!impl_)
    return;
  // One collective: max over ranks of [v, -v] gives max(v) and -min(v).
  auto v = values.to(torch::kFloat64).flatten();
  auto both = torch::cat({v, -v}).cpu();
  allreduceMax(both);
  const int64_t n = v.numel();
  auto hi = both.slice(0, 0, n), lo = -both.slice(0, n, 2 * n);
  auto differ = hi.ne(lo).nonzero().flatten();
  if (differ.numel() == 0)
    return;
  std::string list;
  for (int64_t k = 0; k < std::min<int64_t>(differ.numel(), 5); ++k) {
    int64_t i = differ[k].item<int64_t>();
    char range[96];
    std::snprintf(range, sizeof(range), " (checksum %.17g..%.17g)", lo[i].item<double>(),
                  hi[i].item<double>());
    list += (k ? ", " : "") +
            (i < static_cast<int64_t>(names.size()) ? names[i] : "#" + std::to_string(i)) + range;
  }
  if (differ.numel() > 5)
    list += " and " + std::to_string(differ.numel() - 5) + " more";
  throw std::runtime_error("ranks diverged " + what + ": " + list + " differ across the " +
                           std::to_string(size()) +
                           " ranks; every rank must run the same binary with the same "
                           "options and --threads (this is a bug if they do)");
}

// ---------------------------------------------------------- GradientBucket

GradientBucket::GradientBucket(std::vector<torch::Tensor> parameters, int64_t extras)
    : parameters_(std::move(parameters)), extras_(extras) {
  for (const auto &p : parameters_)
    numel_ += p.numel();
  auto options =
      parameters_.empty() ? torch::TensorOptions(torch::kFloat32) : parameters_.front().options();
  flat_ = torch::zeros({numel_ + extras_}, options.requires_grad(false));
}

std::vector<double> GradientBucket::allreduce(ProcessGroup &group,
                                              const std::vector<double> &extras) {
  if (static_cast<int64_t>(extras.size()) != extras_)
    throw std::invalid_argument("GradientBucket: " + std::to_string(extras.size()) +
                                " extras given, " + std::to_string(extras_) + " expected");
  if (group.size() == 1)
    return extras;
  torch::NoGradGuard noGrad;
  int64_t offset = 0;
  for (const auto &p : parameters_) {
    auto slot = flat_.narrow(0, offset, p.numel());
    if (p.grad().defined())
      slot.copy_(p.grad().reshape({-1}));
    else
      slot.zero_();
    offset += p.numel();
  }
  auto tail = flat_.narrow(0, numel_, extras_);
  tail.copy_(torch::tensor(extras, torch::kFloat64).to(flat_.options()));
  group.allreduceSum(flat_);
  flat_.narrow(0, 0, numel_).div_(static_cast<double>(group.size()));
  offset = 0;
  for (auto &p : parameters_) {
    auto slot = flat_.narrow(0, offset, p.numel()).view(p.sizes());
    if (p.grad().defined())
      p.mutable_grad().copy_(slot);
    else
      p.mutable_grad() = slot.clone();
    offset += p.numel();
  }
  auto summed = tail.to(torch::kCPU, torch::kFloat64);
  return std::vector<double>(summed.data_ptr<double>(), summed.data_ptr<double>() + extras_);
}

// ------------------------------------------------------------ launcher

namespace {

std::vector<pid_t> gChildren;

void forwardSignal(int sig) {
  for (pid_t pid : gChildren)
    if (pid > 0)
      ::kill(pid, sig);
}

int freeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error(std::string("--nproc: socket() failed: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error(std::string("--nproc: no free loopback port (") + std::strerror(err) +
                             "); pass --master-port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int exitCode(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return 1;
}

std::string describe(int status) {
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "exited with code " + std::to_string(exitCode(status));
}

} // namespace

int launchLocalRanks(int argc, char **argv, int nproc, int masterPort) {
  if (nproc < 1)
    throw std::invalid_argument("--nproc " + std::to_string(nproc) + " must be at least 1");
  // The ranks run this executable again, without --nproc.
  std::vector<std::string> args;
  for (int a = 0; a < argc; ++a) {
    std::string arg = argv[a];
    if (a > 0 && arg == "--nproc") {
      ++a;
      continue;
    }
    if (a > 0 && arg.rfind("--nproc=", 0) == 0)
      continue;
    args.push_back(arg);
  }
  const int port = masterPort > 0 ? masterPort : freeLoopbackPort();

  std::vector<std::string> baseEnv;
  for (char **e = environ; *e; ++e) {
    std::string kv = *e;
    for (const char *key : {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=",
                            "MASTER_ADDR=", "MASTER_PORT="})
      if (kv.rfind(key, 0) == 0)
        kv.clear();
    if (!kv.empty())
      baseEnv.push_back(kv);
  }

  struct sigaction forward {};
  forward.sa_handler = forwardSignal;
  sigemptyset(&forward.sa_mask);
  struct sigaction oldInt {
  }, oldTerm{};
  sigaction(SIGINT, &forward, &oldInt);
  sigaction(SIGTERM, &forward, &oldTerm);

  std::vector<char *> argvPtrs;
  for (auto &a : args)
    argvPtrs.push_back(a.data());
  argvPtrs.push_back(nullptr);

  gChildren.assign(nproc, -1);
  int running = 0;
  int result = 0;
  auto stopOthers = [&](int sig) {
    for (pid_t pid : gChildren)
      if (pid > 0)
        ::kill(pid, sig);
  };
  for (int r = 0; r < nproc; ++r) {
    std::vector<std::string> env = baseEnv;
    env.push_back("RANK=" + std::to_string(r));
    env.push_back("LOCAL_RANK=" + std::to_string(r));
    env.push_back("WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
    std::vector<char *> envPtrs;
    for (auto &kv : env)
      envPtrs.push_back(kv.data());
    envPtrs.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argvPtrs.data(), envPtrs.data());
    if (rc != 0) {
      std::fprintf(stderr, "slak-train: starting rank %d failed: %s\n", r, std::strerror(rc));
      result = 1;
      stopOthers(SIGTERM);
      break;
    }
    gChildren[r] = pid;
    ++running;
  }

  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, deadline == decltype(deadline)::max() ? 0 : WNOHANG);
    if (pid == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        stopOthers(SIGKILL);
        deadline = decltype(deadline)::max();
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      continue;
    }
    if (pid < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    int rank = -1;
    for (int r = 0; r < nproc; ++r)
      if (gChildren[r] == pid) {
        rank = r;
        gChildren[r] = -1;
      }
    if (rank < 0)
      continue;
    --running;
    int code = exitCode(status);
    if (code != 0 && result == 0) {
      result = code;
      if (running > 0) {
        std::fprintf(stderr, "slak-train: rank %d %s; stopping the other %d rank(s)\n", rank,
                     describe(status).c_str(), running);
        stopOthers(SIGTERM);
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      } else {
        std::fprintf(stderr, "slak-train: rank %d %s\n", rank, describe(status).c_str());
      }
    }
  }
  gChildren.clear();
  sigaction(SIGINT, &oldInt, nullptr);
  sigaction(SIGTERM, &oldTerm, nullptr);
  return result;
}

} // namespace slak::train
