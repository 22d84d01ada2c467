#include "codegen/ElementCodec.h"

#include <cmath>
#include <cstring>

namespace slak::codegen {
namespace {

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float floatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

} // namespace

uint16_t floatToHalfBits(float value) {
  uint32_t x = bitsOf(value);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) // inf or NaN
    return static_cast<uint16_t>(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (x >= 0x477ff000u) // >= 65520 rounds to infinity
    return static_cast<uint16_t>(sign | 0x7c00u);
  if (x < 0x38800000u) { // below the smallest normal half: units of 2^-24
    const float scaled = std::fabs(value) * 16777216.0f; // exact
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  x += 0x0fffu + ((x >> 13) & 1u); // round to nearest even at bit 13
  return static_cast<uint16_t>(sign | ((x - 0x38000000u) >> 13));
}

float halfBitsToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) { // zero or subnormal: mantissa * 2^-24
    const float magnitude = static_cast<float>(mantissa) / 16777216.0f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31)
    return floatOf(sign | 0x7f800000u | (mantissa << 13));
  return floatOf(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t floatToBf16Bits(float value) {
  uint32_t u = bitsOf(value);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float bf16BitsToFloat(uint16_t bits) { return floatOf(static_cast<uint32_t>(bits) << 16); }

float roundToElementType(float value, ElementType type) {
  switch (type) {
  case ElementType::F32:
    return value;
  case ElementType::F16:
    return halfBitsToFloat(floatToHalfBits(value));
  case ElementType::BF16:
    return bf16BitsToFloat(floatToBf16Bits(value));
  }
  return value;
}

std::vector<uint8_t> encodeElements(const std::vector<float> &values, ElementType type) {
  std::vector<uint8_t> bytes(values.size() * elementTypeBytes(type));
  for (size_t i = 0; i < values.size(); ++i) {
    if (type == ElementType::F32) {
      std::memcpy(&bytes[4 * i], &values[i], 4);
    } else {
      const uint16_t bits =
          type == ElementType::F16 ? floatToHalfBits(values[i]) : floatToBf16Bits(values[i]);
      std::memcpy(&bytes[2 * i], &bits, 2);
    }
  }
  return bytes;
}

std::vector<float> decodeElements(const void *bytes, int64_t count, ElementType type) {
  std::vector<float> values(count);
  const auto *p = static_cast<const uint8_t *>(bytes);
  for (int64_t i = 0; i < count; ++i) {
    if (type == ElementType::F32) {
      std::memcpy(&values[i], p + 4 * i, 4);
    } else {
      uint16_t bits;
      std::memcpy(&bits, p + 2 * i, 2);
      values[i] = type == ElementType::F16 ? halfBitsToFloat(bits) : bf16BitsToFloat(bits);
    }
  }
  return values;
}

} // namespace slak::codegen
