// Reading and writing the numbers inside constant tensors, whichever form
// they take (`dense<...>` or `dense_resource<...>` blobs) and whichever
// element type (f32, f16, bf16, i1, i32). Passes fold BatchNorms and build
// tap tables from these; verifiers check tap tables with them.
#pragma once

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Value.h"

#include <optional>
#include <vector>

namespace mlir::slak {

/// The elements attribute of a constant-producing value, or null.
ElementsAttr constantElements(Value value);

/// All elements as doubles (float element types), row-major; nullopt when the
/// attribute is not a readable float tensor (e.g. a resource that was elided).
std::optional<std::vector<double>> readFloats(ElementsAttr attr);
/// All elements as bytes 0/1 (i1 tensors, or non-zero test for any integer).
std::optional<std::vector<uint8_t>> readBools(ElementsAttr attr);
/// All elements as int32 (i32 tensors).
std::optional<std::vector<int32_t>> readInt32s(ElementsAttr attr);

/// A `dense<...>` float tensor of `type` holding `values` (rounded to the
/// element type).
DenseElementsAttr makeFloats(RankedTensorType type, ArrayRef<double> values);
/// A `dense_resource<name>` blob of i32 (the form used for tap tables).
ElementsAttr makeInt32Resource(MLIRContext *context, StringRef name, ArrayRef<int32_t> values);

} // namespace mlir::slak
