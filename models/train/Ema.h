// Ema: the exponential moving average of a model's weights that SLaK's
// recipe evaluates beside the model (--ema-decay). After every optimizer step
// ema = decay * ema + (1 - decay) * model for parameters and floating-point
// buffers (BatchNorm statistics); integer buffers (counters) are copied.
// Masked weights stay exactly zero in the average too.
#pragma once

#include "models/Models.h"
#include "models/sparse/Masking.h"

#include <memory>

namespace slak::train {

class Ema {
public:
  /// A copy of `model`'s architecture (`config`) on `device`, in eval mode;
  /// its weights are set by start().
  Ema(const models::ModelConfig &config, torch::Device device, double decay);

  /// The average starts as `model`'s parameters and buffers; `masking`
  /// (may be null) hands its masks to the average's large-kernel layers.
  void start(models::Classifier &model, const sparse::Masking *masking);
  /// One step towards `model`, then zeroes the dead weights of `masking`.
  void update(models::Classifier &model, sparse::Masking *masking);

  models::Classifier &model() { return *average_; }

private:
  std::shared_ptr<models::Classifier> average_;
  double decay_;
};

} // namespace slak::train
