#include "models/analysis/Figure.h"

#include "models/analysis/BitmapFont.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace slak::analysis {

namespace {

constexpr Rgb kBackground{255, 255, 255};
constexpr Rgb kText{20, 20, 30};
constexpr Rgb kBox{120, 220, 255};
constexpr int kMargin = 12;

/// Breaks `line` at spaces so that no piece is wider than maxChars (a word
/// longer than that is cut).
std::vector<std::string> wrap(const std::string &line, size_t maxChars) {
  std::vector<std::string> out;
  std::string current;
  size_t i = 0;
  while (i < line.size()) {
    size_t end = line.find(' ', i);
    if (end == std::string::npos)
      end = line.size();
    std::string word = line.substr(i, end - i);
    i = end + 1;
    while (word.size() > maxChars) {
      if (!current.empty())
        out.push_back(current), current.clear();
      out.push_back(word.substr(0, maxChars));
      word = word.substr(maxChars);
    }
    if (current.empty())
      current = word;
    else if (current.size() + 1 + word.size() <= maxChars)
      current += ' ' + word;
    else
      out.push_back(current), current = word;
  }
  if (!current.empty() || out.empty())
    out.push_back(current);
  return out;
}

} // namespace

Rgb heatColour(double t) {
  // Anchors chosen by hand for this project: lightness rises monotonically.
  struct Anchor {
    double t, r, g, b;
  };
  static constexpr Anchor kAnchors[] = {
      {0.00, 6, 6, 24},    {0.20, 42, 22, 104},  {0.45, 150, 32, 112},
      {0.70, 234, 92, 52}, {0.88, 252, 190, 62}, {1.00, 255, 255, 228},
  };
  if (!(t > 0)) // also NaN
    t = 0;
  t = std::min(t, 1.0);
  size_t k = 1;
  while (k + 1 < std::size(kAnchors) && t > kAnchors[k].t)
    ++k;
  const Anchor &a = kAnchors[k - 1], &b = kAnchors[k];
  const double u = (t - a.t) / (b.t - a.t);
  auto mix = [u](double x, double y) { return static_cast<uint8_t>(std::lround(x + (y - x) * u)); };
  return {mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)};
}

RgbImage heatmapImage(const torch::Tensor &map, int panelSize) {
  if (map.dim() != 2 || map.numel() == 0)
    throw std::invalid_argument("heatmap needs a non-empty 2D map, got shape " +
                                c10::str(map.sizes()));
  if (panelSize <= 0)
    throw std::invalid_argument("panel size " + std::to_string(panelSize) + " is not positive");
  auto m = map.to(torch::kFloat32).unsqueeze(0).unsqueeze(0);
  if (map.size(0) >= panelSize && map.size(1) >= panelSize)
    m = torch::adaptive_avg_pool2d(m, {panelSize, panelSize});
  else
    m = torch::nn::functional::interpolate(m, torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{panelSize, panelSize})
                                                  .mode(torch::kNearest));
  m = m.squeeze(0).squeeze(0).to(torch::kFloat64).contiguous();
  const double *v = m.data_ptr<double>();
  RgbImage image(panelSize, panelSize);
  for (int y = 0; y < panelSize; ++y)
    for (int x = 0; x < panelSize; ++x)
      image.set(x, y, heatColour(v[static_cast<size_t>(y) * panelSize + x]));
  return image;
}

RgbImage renderFigure(const std::vector<FigurePanel> &panels, int panelSize,
                      const std::string &title, const std::string &barLabel) {
  if (panels.empty())
    throw std::invalid_argument("a figure needs at least one panel");
  const int scale = panelSize >= 320 ? 2 : 1;
  const int lineHeight = (kGlyphHeight + 3) * scale;
  const size_t maxChars =
      std::max<size_t>(1, static_cast<size_t>((panelSize + scale) / (kGlyphAdvance * scale)));

  std::vector<std::vector<std::string>> captions;
  size_t captionLines = 0;
  for (const auto &p : panels) {
    std::vector<std::string> lines;
    for (const auto &line : p.caption)
      for (auto &piece : wrap(line, maxChars))
        lines.push_back(piece);
    captionLines = std::max(captionLines, lines.size());
    captions.push_back(std::move(lines));
  }

  const int n = static_cast<int>(panels.size());
  const int width = kMargin + n * (panelSize + kMargin);
  const int titleHeight = title.empty() ? 0 : lineHeight + kMargin / 2;
  const int panelTop = kMargin + titleHeight;
  const int captionTop = panelTop + panelSize + kMargin / 2;
  const int barTop = captionTop + static_cast<int>(captionLines) * lineHeight + kMargin / 2;
  const int barHeight = 10 * scale;
  const auto barLines =
      wrap(barLabel, std::max<size_t>(1, static_cast<size_t>((width - 2 * kMargin + scale) /
                                                             (kGlyphAdvance * scale))));
  const int height =
      barTop + barHeight + 4 + (1 + static_cast<int>(barLines.size())) * lineHeight + kMargin;
  RgbImage figure(width, height, kBackground);

  if (!title.empty())
    drawText(figure, kMargin, kMargin, title, scale, kText);
  for (int i = 0; i < n; ++i) {
    const int x0 = kMargin + i * (panelSize + kMargin);
    const auto &p = panels[i];
    figure.blit(heatmapImage(p.map, panelSize), x0, panelTop);
    if (p.boxHi >= p.boxLo) {
      // Map pixels [lo, hi] -> panel pixels; dotted so the map shows through.
      const double s = static_cast<double>(panelSize) / static_cast<double>(p.map.size(1));
      const int a = static_cast<int>(std::floor(p.boxLo * s));
      const int b = std::min(panelSize - 1, static_cast<int>(std::ceil((p.boxHi + 1) * s)) - 1);
      for (int t = a; t <= b; ++t) {
        if ((t / 3) % 2)
          continue;
        figure.set(x0 + t, panelTop + a, kBox);
        figure.set(x0 + t, panelTop + b, kBox);
        figure.set(x0 + a, panelTop + t, kBox);
        figure.set(x0 + b, panelTop + t, kBox);
      }
    }
    for (size_t l = 0; l < captions[i].size(); ++l)
      drawText(figure, x0, captionTop + static_cast<int>(l) * lineHeight, captions[i][l], scale,
               kText);
  }

  // Colour bar across the panels, 0 on the left and 1 on the right.
  const int barWidth = width - 2 * kMargin;
  for (int x = 0; x < barWidth; ++x)
    figure.fillRect(kMargin + x, barTop, 1, barHeight,
                    heatColour(static_cast<double>(x) / std::max(1, barWidth - 1)));
  const int labelTop = barTop + barHeight + 4;
  drawText(figure, kMargin, labelTop, "0", scale, kText);
  drawText(figure, kMargin + barWidth - textWidth("1", scale), labelTop, "1", scale, kText);
  for (size_t l = 0; l < barLines.size(); ++l)
    drawText(figure, kMargin, labelTop + static_cast<int>(l + 1) * lineHeight, barLines[l], scale,
             kText);
  return figure;
}

} // namespace slak::analysis
