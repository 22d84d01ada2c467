// ElementCodec: host-side conversion between f32 and the storage element
// types of the kernels (IEEE f16, bf16), bit-exact with the device stores
// (round to nearest even; NaN stays NaN). Used to fill and read back buffers
// and to round test inputs to the type before they go to the oracle.
#pragma once

#include <cstdint>
#include <vector>

#include "codegen/KernelSpec.h"

namespace slak::codegen {

uint16_t floatToHalfBits(float value);
float halfBitsToFloat(uint16_t bits);
uint16_t floatToBf16Bits(float value);
float bf16BitsToFloat(uint16_t bits);

/// `value` rounded to `type` and back (the identity for f32).
float roundToElementType(float value, ElementType type);

/// Packs floats into the byte image of a buffer of `type`.
std::vector<uint8_t> encodeElements(const std::vector<float> &values, ElementType type);
/// Unpacks `count` elements of `type` from `bytes`.
std::vector<float> decodeElements(const void *bytes, int64_t count, ElementType type);

} // namespace slak::codegen
