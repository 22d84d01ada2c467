#include "models/checkpoint/TrainingCheckpoint.h"

#include "codegen/FileKind.h"
#include "models/checkpoint/ConfigJson.h"
#include "models/checkpoint/WeightReader.h"
#include "models/deploy/ZipChecksums.h"
#include "models/sparse/Masking.h"
#include "runtime/Log.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace slak::checkpoint {

namespace fs = std::filesystem;

namespace {

/// "rng/" and "masks/" keys of rank `rank`'s generator.
std::string generatorKey(const std::string &kind, int64_t rank) {
  return rank == 0 ? kind : kind + "_rank" + std::to_string(rank);
}

/// Flushes a file, or a folder's entries (a rename), to the disk, so that a
/// checkpoint survives a power loss as well as a killed process.
void fsyncPath(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void writeOptimizer(torch::serialize::OutputArchive &archive, const torch::nn::Module &model,
                    const torch::optim::AdamW &optimizer) {
  int64_t count = 0;
  for (const auto &p : model.named_parameters()) {
    auto it = optimizer.state().find(p.value().unsafeGetTensorImpl());
    if (it == optimizer.state().end())
      continue;
    const auto &state = static_cast<const torch::optim::AdamWParamState &>(*it->second);
    torch::serialize::OutputArchive entry(archive.compilation_unit());
    entry.write("name", c10::IValue(p.key()));
    entry.write("step", torch::tensor(state.step()));
    entry.write("exp_avg", state.exp_avg().cpu());
    entry.write("exp_avg_sq", state.exp_avg_sq().cpu());
    archive.write(std::to_string(count++), entry);
  }
  archive.write("count", torch::tensor(count));
}

void writeMasks(torch::serialize::OutputArchive &archive, const sparse::Masking &masking) {
  const auto &layers = masking.layers();
  archive.write("count", torch::tensor(static_cast<int64_t>(layers.size())));
  for (size_t i = 0; i < layers.size(); ++i) {
    archive.write("name/" + std::to_string(i), c10::IValue(layers[i].name));
    archive.write("mask/" + std::to_string(i), layers[i].mask.to(torch::kCPU));
  }
  archive.write("generator", masking.generatorState());
}

void writeMeta(torch::serialize::OutputArchive &archive, const Meta &meta) {
  archive.write("format", torch::tensor(kFormat));
  archive.write("step", torch::tensor(meta.step));
  archive.write("world_size", torch::tensor(meta.worldSize));
  archive.write("epoch_loss_sum", torch::tensor(meta.epoch.lossSum, torch::kFloat64));
  archive.write("epoch_train_seconds", torch::tensor(meta.epoch.trainSeconds, torch::kFloat64));
  archive.write("epoch_correct", torch::tensor(meta.epoch.correct));
  archive.write("epoch_seen", torch::tensor(meta.epoch.seen));
  archive.write("config", c10::IValue(meta.config));
}

/// `archive` to `path` through <path>.tmp, fsync and rename.
void saveAtomically(torch::serialize::OutputArchive &archive, const std::string &path) {
  if (auto dir = fs::path(path).parent_path(); !dir.empty())
    fs::create_directories(dir);
  const std::string tmp = path + ".tmp";
  try {
    archive.save_to(tmp);
  } catch (const c10::Error &e) {
    throw std::runtime_error("cannot write the checkpoint " + tmp + " (" +
                             e.what_without_backtrace() +
                             "): make --out-dir / --checkpoint a writable file path");
  }
  fsyncPath(tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot rename the checkpoint " + tmp + " to " + path + ": " +
                             std::strerror(errno));
  const std::string dir = fs::path(path).parent_path().string();
  fsyncPath(dir.empty() ? "." : dir);
}

/// How a reader names the file and what it advises for one it cannot use.
struct Wording {
  std::string name;     // "checkpoint", "--resume"
  std::string expected; // what the file should have been
  std::string damaged;  // the phrase for records whose CRC-32 differs
  std::string fix;      // after a damaged or unreadable file
  std::string otherFix; // after a file that is no checkpoint at all ("" or "; ...")
  bool needsMeta;       // a file without meta/ (weights only) is refused
};

Wording wording(Reader reader) {
  if (reader == Reader::Resume) {
    const std::string fix = "resume from an intact checkpoint (slak-train writes checkpoint.pt "
                            "whole or not at all) or start afresh without --resume";
    return {"--resume",
            "not a checkpoint (slak-train writes <out-dir>/checkpoint.pt)",
            "is not an intact checkpoint",
            fix,
            "; " + fix,
            true};
  }
  return {"checkpoint",
          "not a checkpoint (slak-train writes <out-dir>/checkpoint.pt; an official SLaK "
          "checkpoint is a torch.save .pth file)",
          "is corrupt",
          "write or copy it again",
          "",
          false};
}

/// The first sentence of a LibTorch message, without its C++ stack trace
/// and miniz's advice paragraph.
std::string firstSentence(const c10::Error &e) {
  std::string why = e.what_without_backtrace();
  why = why.substr(0, why.find('\n'));
  if (size_t internal = why.find(". This is an internal miniz error");
      internal != std::string::npos)
    why.erase(internal);
  return why.substr(0, why.find(". "));
}

/// meta/ of `root` (a Meta with format 0 when the file has none).
Meta readMeta(torch::serialize::InputArchive &root) {
  Meta out;
  torch::serialize::InputArchive meta;
  if (!root.try_read("meta", meta)) {
    out.format = 0;
    return out;
  }
  auto readInt = [&](const char *key, int64_t &value) {
    torch::Tensor t;
    if (meta.try_read(key, t) && t.defined())
      value = t.item<int64_t>();
  };
  auto readDouble = [&](const char *key, double &value) {
    torch::Tensor t;
    if (meta.try_read(key, t) && t.defined())
      value = t.item<double>();
  };
  out.format = 0;
  readInt("format", out.format);
  readInt("step", out.step);
  readInt("world_size", out.worldSize);
  readDouble("epoch_loss_sum", out.epoch.lossSum);
  readDouble("epoch_train_seconds", out.epoch.trainSeconds);
  readInt("epoch_correct", out.epoch.correct);
  readInt("epoch_seen", out.epoch.seen);
  c10::IValue config;
  if (meta.try_read("config", config) && config.isString())
    out.config = upgradeConfigJson(config.toStringRef());
  return out;
}

} // namespace

void write(const std::string &path, const Snapshot &s) {
  torch::serialize::OutputArchive root;
  auto section = [&](const char *name, const auto &fill) {
    torch::serialize::OutputArchive archive(root.compilation_unit());
    fill(archive);
    root.write(name, archive);
  };
  section("model", [&](auto &a) { s.model->save(a); });
  if (s.ema)
    section("ema", [&](auto &a) { s.ema->save(a); });
  section("optimizer", [&](auto &a) {
    if (s.optimizer)
      writeOptimizer(a, *s.model, *s.optimizer);
    else
      a.write("count", torch::tensor(int64_t{0}));
  });
  if (s.masking)
    section("masks", [&](auto &a) { writeMasks(a, *s.masking); });
  section("rng", [&](auto &a) {
    for (size_t r = 0; r < s.cpuGenerators.size(); ++r)
      a.write(generatorKey("cpu", static_cast<int64_t>(r)), s.cpuGenerators[r]);
    for (size_t r = 0; r < s.cudaGenerators.size(); ++r)
      a.write(generatorKey("cuda", static_cast<int64_t>(r)), s.cudaGenerators[r]);
  });
  section("meta", [&](auto &a) { writeMeta(a, s.meta); });
  saveAtomically(root, path);
}

// ------------------------------------------------------------- reading

struct TrainingCheckpoint::Impl {
  std::string path;
  Wording words;
  torch::serialize::InputArchive root;
  Meta meta;

  std::string subject() const { return words.name + " " + path; }

  /// Runs `read`, turning LibTorch's errors (a record of another type, a
  /// file LibTorch cannot parse) into one line naming the file and the fix;
  /// the C++ trace follows with SLAK_LOG=debug.
  template <typename F> auto guard(F &&read) {
    try {
      return read();
    } catch (const c10::Error &e) {
      throw std::runtime_error(
          subject() + " cannot be read as a slak-train checkpoint (" + firstSentence(e) +
          "): the file is truncated, corrupt or not a checkpoint; " + words.fix +
          (runtime::debugLogging() ? std::string("\n") + e.what() : std::string()));
    }
  }

  /// rng/<kind>[_rank<r>]; undefined when absent.
  torch::Tensor generator(const std::string &kind, int64_t rank) {
    return guard([&] {
      torch::serialize::InputArchive rng;
      torch::Tensor state;
      if (root.try_read("rng", rng))
        rng.try_read(generatorKey(kind, rank), state);
      return state;
    });
  }

  WeightReader weightReader() const {
    const std::string config = meta.config;
    return WeightReader(subject(), [config] {
      return "it was written for another model (" + (config.empty() ? "unknown" : config) +
             "); pass the same --model, overrides and --lk-backend as the training run";
    });
  }

  /// The file's kind, then every record's CRC-32, then LibTorch's parse.
  void open() {
    const std::string kind = codegen::describeFileKind(path);
    if (kind.rfind("a folder", 0) == 0 || kind == "not a regular file")
      throw std::runtime_error(subject() + " is " + kind + ", " + words.expected + words.otherFix);
    if (!fs::is_regular_file(path))
      throw std::runtime_error(subject() +
                               ": no such file (slak-train writes <out-dir>/checkpoint.pt)" +
                               words.otherFix);
    if (kind.rfind("a zip archive", 0) != 0)
      throw std::runtime_error(subject() + " is " + (kind.empty() ? "not a zip archive" : kind) +
                               ", " + words.expected + words.otherFix);
    try {
      models::checkPyTorchArchive(path);
    } catch (const c10::Error &e) {
      throw std::runtime_error(subject() +
                               " is not a readable zip archive (truncated or "
                               "corrupt?): " +
                               firstSentence(e) + "; " + words.fix);
    } catch (const std::runtime_error &e) {
      throw std::runtime_error(subject() + " " + words.damaged + ": " + e.what() + "; " +
                               words.fix);
    }
    guard([&] {
      root.load_from(path, torch::kCPU);
      meta = readMeta(root);
    });
    if (meta.format == 0 && words.needsMeta)
      throw std::runtime_error(subject() + " has no meta/ record: not a slak-train checkpoint; " +
                               words.fix);
    if (meta.format != 0 && meta.format != kFormat)
      throw std::runtime_error(subject() + " is in checkpoint format " +
                               std::to_string(meta.format) + ", this build reads format " +
                               std::to_string(kFormat) + ": use the slak build that wrote it");
  }
};

TrainingCheckpoint::TrainingCheckpoint(const std::string &path, Reader reader)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->words = wording(reader);
  impl_->open();
}

TrainingCheckpoint::~TrainingCheckpoint() = default;
TrainingCheckpoint::TrainingCheckpoint(TrainingCheckpoint &&) noexcept = default;

const std::string &TrainingCheckpoint::path() const { return impl_->path; }
const Meta &TrainingCheckpoint::meta() const { return impl_->meta; }

bool TrainingCheckpoint::hasEma() const {
  torch::serialize::InputArchive ema;
  return impl_->guard([&] { return impl_->root.try_read("ema", ema); });
}

bool TrainingCheckpoint::hasMasks() const {
  torch::serialize::InputArchive masks;
  return impl_->guard([&] { return impl_->root.try_read("masks", masks); });
}

void TrainingCheckpoint::refuse(const std::string &what) const {
  throw std::runtime_error(impl_->subject() + " " + what);
}

void TrainingCheckpoint::readWeights(torch::nn::Module &model, bool ema) {
  impl_->guard([&] {
    WeightReader reader = impl_->weightReader();
    const std::string section = ema ? "ema" : "model";
    torch::serialize::InputArchive weights;
    if (!impl_->root.try_read(section, weights))
      reader.fail(section + "/ is missing");
    reader.readModule(model, weights, section + "/", "");
  });
}

void TrainingCheckpoint::readOptimizer(torch::nn::Module &model, torch::optim::AdamW &optimizer,
                                       torch::Device device) {
  impl_->guard([&] {
    WeightReader reader = impl_->weightReader();
    torch::serialize::InputArchive archive;
    if (!impl_->root.try_read("optimizer", archive))
      reader.fail("optimizer/ is missing");
    torch::Tensor count;
    archive.read("count", count);
    auto params = model.named_parameters();
    optimizer.state().clear();
    for (int64_t i = 0; i < count.item<int64_t>(); ++i) {
      torch::serialize::InputArchive entry;
      archive.read(std::to_string(i), entry);
      c10::IValue name;
      torch::Tensor step, expAvg, expAvgSq;
      entry.read("name", name);
      entry.read("step", step);
      entry.read("exp_avg", expAvg);
      entry.read("exp_avg_sq", expAvgSq);
      const std::string &n = name.toStringRef();
      auto *param = params.find(n);
      if (!param)
        reader.fail("optimizer/ has state for " + n + ", which the model does not have");
      reader.checkShape("optimizer/ exp_avg of " + n, expAvg.sizes(), *param);
      reader.checkShape("optimizer/ exp_avg_sq of " + n, expAvgSq.sizes(), *param);
      auto state = std::make_unique<torch::optim::AdamWParamState>();
      state->step(step.item<int64_t>());
      state->exp_avg(expAvg.to(device));
      state->exp_avg_sq(expAvgSq.to(device));
      optimizer.state()[param->unsafeGetTensorImpl()] = std::move(state);
    }
  });
}

Masks TrainingCheckpoint::readMasks(torch::nn::Module &model) {
  return impl_->guard([&] {
    Masks out;
    torch::serialize::InputArchive archive;
    if (!impl_->root.try_read("masks", archive))
      return out;
    WeightReader reader = impl_->weightReader();
    torch::Tensor count;
    archive.read("count", count);
    auto params = model.named_parameters();
    for (int64_t i = 0; i < count.item<int64_t>(); ++i) {
      c10::IValue name;
      torch::Tensor mask;
      archive.read("name/" + std::to_string(i), name);
      archive.read("mask/" + std::to_string(i), mask);
      const std::string &n = name.toStringRef();
      auto *param = params.find(n);
      if (!param)
        reader.fail("masks/ has a mask for " + n + ", which the model does not have");
      if (mask.sizes() != param->sizes())
        reader.fail("the mask of " + n + " has shape " + c10::str(mask.sizes()) +
                    ", the weight's is " + c10::str(param->sizes()));
      out.layers.emplace_back(n, mask);
    }
    archive.try_read("generator", out.generator);
    return out;
  });
}

torch::Tensor TrainingCheckpoint::cpuGenerator(int64_t rank) {
  return impl_->generator("cpu", rank);
}

torch::Tensor TrainingCheckpoint::cudaGenerator(int64_t rank) {
  return impl_->generator("cuda", rank);
}

} // namespace slak::checkpoint
