// ConfigJson: a model configuration as a training checkpoint records it
// (meta/config) and slak-train's log prints it: a JSON object with name,
// depths, dims, kernel_sizes, small_kernel, decomposed, branch_bn,
// in_channels, num_classes, stem_kernel, stem_stride and sparsity. The one
// place that writes these fields and reads them back into a ModelConfig.
#pragma once

#include "models/Models.h"

#include <string>

namespace slak::checkpoint {

/// Fields a record may leave out: an official SLaK checkpoint records no
/// config, and its tensor shapes do not show every field.
enum ConfigFields : unsigned {
  kKernelSizes = 1u << 0,
  kSmallKernel = 1u << 1,
  kInChannels = 1u << 2,
  kNumClasses = 1u << 3,
  kStem = 1u << 4, // stem_kernel and stem_stride
  kSparsity = 1u << 5,
  kAllFields = (1u << 6) - 1,
};

/// The JSON text (keys sorted) that meta/config holds for `config`; name,
/// depths, dims, decomposed and branch_bn always, the others in `fields`.
std::string configJson(const models::ModelConfig &config, unsigned fields = kAllFields);

/// A recorded config in the current fields: a record without stem_stride
/// (written before stems could overlap) has a patchify stem, stride =
/// stem_kernel. Text that is not a JSON object comes back unchanged.
std::string upgradeConfigJson(const std::string &recorded);

/// The registry model `model` (empty: the recorded name) with `overrides`;
/// every field they leave unset (kernel sizes, small kernel, decomposed,
/// branch BN, width factor, classes, input channels, stems, sparsity) comes
/// from `recorded`. Throws std::runtime_error naming `file` and both
/// configurations when the overrides build another model than the record
/// (sparsity may differ: the masks come from the file).
models::ModelConfig configFromJson(const std::string &recorded, const std::string &model,
                                   const models::ModelOverrides &overrides,
                                   const std::string &file);

} // namespace slak::checkpoint
