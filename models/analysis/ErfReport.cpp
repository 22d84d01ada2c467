#include "models/analysis/ErfReport.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace slak::analysis {

using json = nlohmann::json;

namespace {

json sidesJson(const std::vector<ErfSide> &sides) {
  json out = json::array();
  for (const auto &s : sides)
    out.push_back({{"fraction", s.fraction}, {"side", s.side}, {"area_ratio", s.areaRatio}});
  return out;
}

std::string percent(double fraction) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%g%%", 100 * fraction);
  return buf;
}

std::string kernelText(const models::ModelConfig &c) {
  std::ostringstream os;
  for (size_t i = 0; i < c.kernelSizes.size(); ++i) {
    const int m = c.kernelSizes[i], n = c.smallKernel;
    os << (i ? ", " : "");
    if (c.family == models::Family::Slak && c.decomposed && m > n)
      os << m << "x" << n << "+" << n << "x" << m << "+" << n << "x" << n;
    else if (c.family != models::Family::ConvNeXt && n > 0 && n < m)
      os << m << "x" << m << "+" << n << "x" << n;
    else
      os << m << "x" << m;
  }
  return os.str();
}

} // namespace

json erfPanelJson(const ErfPanel &p) {
  const auto rf = centreReceptiveField(p.config, p.size);
  const int64_t fmap = featureMapSize(p.config, p.size);
  return json{
      {"label", p.label},
      {"model",
       {{"name", p.config.name},
        {"depths", p.config.depths},
        {"dims", p.config.dims()},
        {"kernel_sizes", p.config.kernelSizes},
        {"small_kernel", p.config.smallKernel},
        {"decomposed", p.config.decomposed},
        {"kernels", kernelText(p.config)},
        {"backend", models::lkBackendName(models::resolveLkBackend(p.config.backend))}}},
      {"checkpoint", p.checkpoint.empty() ? json(nullptr) : json(p.checkpoint)},
      {"weights", p.checkpoint.empty() ? "random" : (p.ema ? "ema" : "model")},
      {"data", p.data},
      {"seed", p.seed},
      {"size", p.size},
      {"images", p.erf.images},
      {"feature_map", {fmap, fmap}},
      {"centre", {fmap / 2, fmap / 2}},
      {"receptive_field",
       {{"side", rf.fullSide()},
        {"lo", rf.fullLo},
        {"hi", rf.fullHi},
        {"clipped_lo", rf.lo},
        {"clipped_hi", rf.hi}}},
      {"sides_of", "normalised map log10(x+1)/max"},
      {"sides", sidesJson(p.erf.sides)},
      {"sides_raw", sidesJson(p.erf.rawSides)},
      {"max_contribution", p.erf.mean.max().item<double>()},
      {"total_contribution", p.erf.mean.sum().item<double>()},
  };
}

std::vector<std::string> erfCaption(const ErfPanel &p) {
  std::string fractions, sides;
  for (const auto &s : p.erf.sides) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%g", 100 * s.fraction);
    fractions += (fractions.empty() ? "" : "/") + std::string(buf);
    sides += (sides.empty() ? "" : "/") + std::to_string(s.side);
  }
  return {p.label, fractions + "%: " + sides + " px",
          "RF " + std::to_string(centreReceptiveField(p.config, p.size).fullSide()) + " px, " +
              std::to_string(p.size) + "x" + std::to_string(p.size) + ", " +
              std::to_string(p.erf.images) + " images"};
}

std::string erfSummary(const ErfPanel &p) {
  std::ostringstream os;
  os << p.label << ":";
  for (size_t i = 0; i < p.erf.sides.size(); ++i)
    os << (i ? "," : "") << ' ' << percent(p.erf.sides[i].fraction) << ' ' << p.erf.sides[i].side
       << " px";
  os << " (theoretical RF " << centreReceptiveField(p.config, p.size).fullSide() << " px, "
     << p.erf.images << " images, " << p.size << "x" << p.size << ")";
  return os.str();
}

void writeFileAtomically(const std::string &path, const std::string &text) {
  if (auto dir = std::filesystem::path(path).parent_path(); !dir.empty())
    std::filesystem::create_directories(dir);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out)
      throw std::runtime_error("cannot write " + tmp + " (for " + path + ")");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + ec.message());
}

} // namespace slak::analysis
