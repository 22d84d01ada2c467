// Host f16/bf16 conversion: known bit patterns, round-to-nearest-even ties,
// overflow, subnormals and NaN, and the buffer encode/decode round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "codegen/ElementCodec.h"

namespace slak::codegen {
namespace {

float fromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(ElementCodec, HalfKnownValues) {
  EXPECT_EQ(floatToHalfBits(1.0f), 0x3c00);
  EXPECT_EQ(floatToHalfBits(-2.0f), 0xc000);
  EXPECT_EQ(floatToHalfBits(0.1f), 0x2e66);
  EXPECT_EQ(floatToHalfBits(65504.0f), 0x7bff);              // largest finite
  EXPECT_EQ(floatToHalfBits(65519.0f), 0x7bff);              // below the rounding midpoint
  EXPECT_EQ(floatToHalfBits(65520.0f), 0x7c00);              // ties to even: infinity
  EXPECT_EQ(floatToHalfBits(std::ldexp(1.0f, -24)), 0x0001); // smallest subnormal
  EXPECT_EQ(floatToHalfBits(std::ldexp(1.0f, -25)), 0x0000); // tie to even: zero
  EXPECT_EQ(floatToHalfBits(std::ldexp(3.0f, -25)), 0x0002); // 1.5 ulp: to even
  EXPECT_EQ(floatToHalfBits(std::ldexp(1.0f, -14)), 0x0400); // smallest normal
  EXPECT_EQ(floatToHalfBits(-0.0f), 0x8000);
  // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: to even (1).
  EXPECT_EQ(floatToHalfBits(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3 * 2^-11 ties between 0x3c01 and 0x3c02: to even.
  EXPECT_EQ(floatToHalfBits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(floatToHalfBits(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(halfBitsToFloat(floatToHalfBits(std::nanf("")))));
  EXPECT_EQ(halfBitsToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(halfBitsToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(halfBitsToFloat(0xfc00), -std::numeric_limits<float>::infinity());
}

TEST(ElementCodec, HalfRoundTripsEveryFiniteHalf) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    if ((bits & 0x7c00) == 0x7c00)
      continue; // inf / NaN
    const uint16_t h = static_cast<uint16_t>(bits);
    ASSERT_EQ(floatToHalfBits(halfBitsToFloat(h)), h) << std::hex << bits;
  }
}

TEST(ElementCodec, Bf16RoundsToNearestEven) {
  EXPECT_EQ(floatToBf16Bits(1.0f), 0x3f80);
  EXPECT_EQ(floatToBf16Bits(fromBits(0x3f808000)), 0x3f80); // tie, even stays
  EXPECT_EQ(floatToBf16Bits(fromBits(0x3f818000)), 0x3f82); // tie, odd rounds up
  EXPECT_EQ(floatToBf16Bits(fromBits(0x3f808001)), 0x3f81); // above the tie
  EXPECT_EQ(floatToBf16Bits(fromBits(0x7f7fffff)), 0x7f80); // rounds to infinity
  EXPECT_TRUE(std::isnan(bf16BitsToFloat(floatToBf16Bits(std::nanf("")))));
  EXPECT_EQ(bf16BitsToFloat(0xc040), -3.0f);
}

TEST(ElementCodec, EncodeDecodeRoundsToTheType) {
  const std::vector<float> values = {1.0f, 0.1f, -3.14159f, 1e-6f};
  for (ElementType type : {ElementType::F32, ElementType::F16, ElementType::BF16}) {
    const std::vector<uint8_t> bytes = encodeElements(values, type);
    EXPECT_EQ(bytes.size(), values.size() * elementTypeBytes(type));
    const std::vector<float> back = decodeElements(bytes.data(), values.size(), type);
    for (size_t i = 0; i < values.size(); ++i)
      EXPECT_EQ(back[i], roundToElementType(values[i], type)) << elementTypeName(type);
  }
  EXPECT_EQ(roundToElementType(0.1f, ElementType::F32), 0.1f);
  EXPECT_NE(roundToElementType(0.1f, ElementType::F16), 0.1f);
  EXPECT_NEAR(roundToElementType(0.1f, ElementType::BF16), 0.1f, 0.1f / 128);
}

} // namespace
} // namespace slak::codegen
