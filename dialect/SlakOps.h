// Operations of the slak dialect: dwconv2d, batch_norm, lk_conv.
#pragma once

#include "dialect/SlakAttrs.h"
#include "dialect/SlakDialect.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "dialect/SlakOps.h.inc"
