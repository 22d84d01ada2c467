// Attributes of the slak dialect: #slak.branch_taps, #slak.taps, #slak.schedule.
#pragma once

#include "codegen/Schedule.h"
#include "dialect/SlakDialect.h"
#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"

#define GET_ATTRDEF_CLASSES
#include "dialect/SlakAttrs.h.inc"
