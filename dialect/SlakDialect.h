// The slak dialect: decomposed sparse large-kernel depthwise convolutions.
#pragma once

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Dialect.h"

#include "dialect/SlakDialect.h.inc"
