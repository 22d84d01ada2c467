#include "models/checkpoint/WeightReader.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

namespace slak::checkpoint {

namespace {

/// A large-kernel layer of the other --lk-backend (the runtime backend
/// keeps its tensors under "lk", the LibTorch one under "branch<b>"): what
/// happened and the flag that fixes it; "" otherwise.
std::string otherBackend(const std::string &missing, torch::serialize::InputArchive &archive) {
  const std::vector<std::string> keys = archive.keys();
  auto has = [&](const std::string &key) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
  };
  if (missing == "lk" && has("branch0"))
    return "the file's large-kernel layers were trained with --lk-backend torch, this model "
           "uses the runtime backend: pass --lk-backend torch";
  if (missing.rfind("branch", 0) == 0 && has("lk"))
    return "the file's large-kernel layers were trained with --lk-backend runtime, this model "
           "uses the LibTorch one (which --lk-backend auto picks without the Halide CPU backend "
           "or a CUDA device): pass --lk-backend runtime";
  return "";
}

} // namespace

WeightReader::WeightReader(std::string file, std::function<std::string()> advice)
    : file_(std::move(file)), advice_(std::move(advice)) {}

void WeightReader::readModule(torch::nn::Module &module, torch::serialize::InputArchive &archive,
                              const std::string &section, const std::string &prefix) {
  for (auto &p : module.named_parameters(/*recurse=*/false))
    readTensor(archive, section + prefix + p.key(), p.key(), p.value(), false);
  for (auto &b : module.named_buffers(/*recurse=*/false))
    readTensor(archive, section + prefix + b.key(), b.key(), b.value(), true);
  for (auto &child : module.named_children()) {
    torch::serialize::InputArchive sub;
    if (!archive.try_read(child.key(), sub)) {
      const std::string missing = section + prefix + child.key() + " is missing";
      if (std::string other = otherBackend(child.key(), archive); !other.empty())
        throw std::runtime_error(file_ + ": " + missing + ": " + other);
      fail(missing);
    }
    readModule(*child.value(), sub, section, prefix + child.key() + ".");
  }
}

void WeightReader::checkShape(const std::string &name, c10::IntArrayRef shape,
                              const torch::Tensor &target) const {
  if (shape != target.sizes())
    fail(name + " has shape " + c10::str(shape) + " in the file, " + c10::str(target.sizes()) +
         " in the model");
}

void WeightReader::copy(const std::string &name, const torch::Tensor &value,
                        torch::Tensor &target) const {
  checkShape(name, value.sizes(), target);
  torch::NoGradGuard noGrad;
  target.copy_(value.to(target.device(), target.scalar_type()));
}

void WeightReader::fail(const std::string &what) const {
  throw std::runtime_error(file_ + ": " + what + ": " + advice_());
}

void WeightReader::readTensor(torch::serialize::InputArchive &archive, const std::string &name,
                              const std::string &key, torch::Tensor &target, bool buffer) {
  torch::Tensor value;
  if (!archive.try_read(key, value, buffer) || !value.defined())
    fail(name + " is missing");
  copy(name, value, target);
}

} // namespace slak::checkpoint
