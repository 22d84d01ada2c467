#include "dialect/ConstantData.h"

#include "mlir/IR/BuiltinDialect.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/APFloat.h"

#include <cstring>

using namespace mlir;

namespace mlir::slak {

ElementsAttr constantElements(Value value) {
  Attribute attr;
  if (!value || !matchPattern(value, m_Constant(&attr)))
    return {};
  return dyn_cast<ElementsAttr>(attr);
}

namespace {

/// The raw bytes of a dense_resource attribute, if its blob is present.
std::optional<ArrayRef<char>> resourceBytes(ElementsAttr attr) {
  auto resource = dyn_cast<DenseResourceElementsAttr>(attr);
  if (!resource)
    return std::nullopt;
  AsmResourceBlob *blob = resource.getRawHandle().getBlob();
  if (!blob)
    return std::nullopt;
  return blob->getData();
}

double halfBitsToDouble(uint16_t bits, const llvm::fltSemantics &semantics) {
  return llvm::APFloat(semantics, llvm::APInt(16, bits)).convertToDouble();
}

} // namespace

std::optional<std::vector<double>> readFloats(ElementsAttr attr) {
  if (!attr)
    return std::nullopt;
  auto floatType = dyn_cast<FloatType>(attr.getElementType());
  if (!floatType)
    return std::nullopt;
  const int64_t count = attr.getNumElements();
  if (auto dense = dyn_cast<DenseElementsAttr>(attr)) {
    std::vector<double> values;
    values.reserve(count);
    for (const APFloat &v : dense.getValues<APFloat>())
      values.push_back(v.convertToDouble());
    return values;
  }
  std::optional<ArrayRef<char>> bytes = resourceBytes(attr);
  if (!bytes)
    return std::nullopt;
  const unsigned width = floatType.getWidth();
  if (static_cast<int64_t>(bytes->size()) != count * static_cast<int64_t>(width / 8))
    return std::nullopt;
  std::vector<double> values(count);
  for (int64_t i = 0; i < count; ++i) {
    const char *p = bytes->data() + i * (width / 8);
    if (width == 32) {
      float f;
      std::memcpy(&f, p, 4);
      values[i] = f;
    } else if (width == 16) {
      uint16_t bits;
      std::memcpy(&bits, p, 2);
      values[i] = halfBitsToDouble(bits, floatType.getFloatSemantics());
    } else if (width == 64) {
      std::memcpy(&values[i], p, 8);
    } else {
      return std::nullopt;
    }
  }
  return values;
}

std::optional<std::vector<uint8_t>> readBools(ElementsAttr attr) {
  if (!attr || !attr.getElementType().isInteger())
    return std::nullopt;
  const int64_t count = attr.getNumElements();
  if (auto dense = dyn_cast<DenseElementsAttr>(attr)) {
    std::vector<uint8_t> values;
    values.reserve(count);
    for (const APInt &v : dense.getValues<APInt>())
      values.push_back(!v.isZero());
    return values;
  }
  std::optional<ArrayRef<char>> bytes = resourceBytes(attr);
  // Resource blobs of i1 hold one byte per element.
  if (!bytes || attr.getElementType().getIntOrFloatBitWidth() > 8 ||
      static_cast<int64_t>(bytes->size()) != count)
    return std::nullopt;
  std::vector<uint8_t> values(count);
  for (int64_t i = 0; i < count; ++i)
    values[i] = (*bytes)[i] != 0;
  return values;
}

std::optional<std::vector<int32_t>> readInt32s(ElementsAttr attr) {
  if (!attr || !attr.getElementType().isInteger(32))
    return std::nullopt;
  const int64_t count = attr.getNumElements();
  if (auto dense = dyn_cast<DenseElementsAttr>(attr)) {
    std::vector<int32_t> values;
    values.reserve(count);
    for (int32_t v : dense.getValues<int32_t>())
      values.push_back(v);
    return values;
  }
  std::optional<ArrayRef<char>> bytes = resourceBytes(attr);
  if (!bytes || static_cast<int64_t>(bytes->size()) != count * 4)
    return std::nullopt;
  std::vector<int32_t> values(count);
  std::memcpy(values.data(), bytes->data(), count * 4);
  return values;
}

DenseElementsAttr makeFloats(RankedTensorType type, ArrayRef<double> values) {
  auto floatType = cast<FloatType>(type.getElementType());
  SmallVector<APFloat> converted;
  converted.reserve(values.size());
  for (double v : values) {
    APFloat f(v);
    bool losesInfo = false;
    f.convert(floatType.getFloatSemantics(), APFloat::rmNearestTiesToEven, &losesInfo);
    converted.push_back(f);
  }
  return DenseElementsAttr::get(type, converted);
}

ElementsAttr makeInt32Resource(MLIRContext *context, StringRef name, ArrayRef<int32_t> values) {
  auto type =
      RankedTensorType::get({static_cast<int64_t>(values.size())}, IntegerType::get(context, 32));
  return DenseResourceElementsAttr::get(type, name,
                                        HeapAsmResourceBlob::allocateAndCopyInferAlign(values));
}

} // namespace mlir::slak
