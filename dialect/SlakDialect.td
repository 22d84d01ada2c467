//===- SlakDialect.td - the slak dialect -------------------*- tablegen -*-===//
//
// Decomposed, sparse, large-kernel depthwise convolutions (SLaK, RepLKNet,
// ConvNeXt) as first-class ops, so that the compiler can fuse parallel
// branches, fold their batch norms and specialise them for sparsity masks.
//
//===----------------------------------------------------------------------===//
#ifndef SLAK_DIALECT_TD
#define SLAK_DIALECT_TD

include "mlir/IR/OpBase.td"

def Slak_Dialect : Dialect {
  let name = "slak";
  let cppNamespace = "::mlir::slak";
  let summary = "Sparse large-kernel depthwise convolutions";
  let description = [{
    Ops for the building block of SLaK-style networks: a depthwise
    convolution whose kernel is a sum of parallel branches (51x5 + 5x51 + 5x5),
    each with an unstructured, per-channel sparsity mask.
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
  }];
}

class Slak_Op<string mnemonic, list<Trait> traits = []>
    : Op<Slak_Dialect, mnemonic, traits>;

#endif // SLAK_DIALECT_TD
