// Runs a function of slak ops through the reference oracle: the proof that
// a rewrite (fusion, folding, merging, trimming, tap tables) keeps the
// numbers, and the way to check an exported model against LibTorch.
//
// Supported: func.return, arith.constant (dense and dense_resource),
// arith.addf / subf / mulf / select, tensor.extract_slice (static),
// slak.dwconv2d, slak.batch_norm and slak.lk_conv (masks, or its tap table
// when it has one, which is what generated kernels read).
#pragma once

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mlir::slak {

/// A dense row-major tensor of numbers (booleans as 0/1).
struct RefTensor {
  std::vector<int64_t> shape;
  std::vector<double> data;
};

/// Evaluates `func` on `args`; fails with a message naming the op and why.
FailureOr<std::vector<RefTensor>> interpret(func::FuncOp func, ArrayRef<RefTensor> args,
                                            std::string &error);

} // namespace mlir::slak
