#include "models/train/Ema.h"

#include <torch/torch.h>

namespace slak::train {

Ema::Ema(const models::ModelConfig &config, torch::Device device, double decay)
    : average_(models::createModel(config)), decay_(decay) {
  average_->to(device);
  average_->eval();
}

void Ema::start(models::Classifier &model, const sparse::Masking *masking) {
  torch::NoGradGuard noGrad;
  auto source = model.named_parameters();
  for (auto &p : average_->named_parameters())
    p.value().copy_(source[p.key()]);
  auto sourceBuffers = model.named_buffers();
  for (auto &b : average_->named_buffers())
    b.value().copy_(sourceBuffers[b.key()]);
  if (masking)
    models::pushMasksToLargeKernels(*average_, masking->maskMap());
}

void Ema::update(models::Classifier &model, sparse::Masking *masking) {
  torch::NoGradGuard noGrad;
  auto source = model.named_parameters();
  for (auto &p : average_->named_parameters())
    p.value().mul_(decay_).add_(source[p.key()], 1.0 - decay_);
  auto sourceBuffers = model.named_buffers();
  for (auto &b : average_->named_buffers()) {
    const auto &v = sourceBuffers[b.key()];
    if (b.value().is_floating_point())
      b.value().mul_(decay_).add_(v, 1.0 - decay_);
    else
      b.value().copy_(v);
  }
  if (masking)
    masking->applyTo(*average_);
}

} // namespace slak::train
