#include "dialect/SlakDialect.h"

#include "dialect/SlakAttrs.h"
#include "dialect/SlakOps.h"

using namespace mlir;
using namespace mlir::slak;

#include "dialect/SlakDialect.cpp.inc"

void SlakDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialect/SlakOps.cpp.inc"
      >();
  registerAttributes();
}
