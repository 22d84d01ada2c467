// BitmapFont: a tiny hand-drawn 5x7 font for figure captions (upper-case
// letters, digits, a small x for sizes such as 13x5 and the punctuation
// captions use; lower-case letters are drawn upper-case, anything else as '?').
#pragma once

#include "models/analysis/Png.h"

#include <string>

namespace slak::analysis {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
/// Horizontal advance per character (glyph plus one column of spacing), unscaled.
inline constexpr int kGlyphAdvance = kGlyphWidth + 1;

/// Whether (col, row) of the glyph for `c` is lit; false outside 5x7.
bool glyphPixel(char c, int col, int row);
/// Width in pixels of `text` drawn at `scale` (no trailing spacing).
int textWidth(const std::string &text, int scale);
/// Draws `text` with its top-left corner at (x, y), each font pixel a
/// scale x scale block; clipped to the image.
void drawText(RgbImage &image, int x, int y, const std::string &text, int scale, Rgb colour);

} // namespace slak::analysis
