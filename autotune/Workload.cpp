#include "autotune/Workload.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

namespace slak::autotune {
namespace {

std::string trim(const std::string &s) {
  const size_t b = s.find_first_not_of(" \t");
  const size_t e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string &s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep))
    parts.push_back(trim(part));
  return parts;
}

int64_t parseInt(const std::string &key, const std::string &value, int64_t min) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception &) {
    used = 0;
  }
  if (used == 0 || used != value.size() || v < min)
    throw std::invalid_argument("--layer: " + key + "=" + value +
                                " is not an integer >= " + std::to_string(min));
  return v;
}

bool parseBool(const std::string &key, const std::string &value) {
  if (value == "1" || value == "true" || value == "yes")
    return true;
  if (value == "0" || value == "false" || value == "no")
    return false;
  throw std::invalid_argument("--layer: " + key + "=" + value + " is not a boolean (0 or 1)");
}

} // namespace

int kindIndex(KernelKind kind) {
  switch (kind) {
  case KernelKind::Forward:
    return 0;
  case KernelKind::BackwardData:
    return 1;
  case KernelKind::BackwardWeight:
  case KernelKind::BackwardWeightReduce:
    return 2;
  }
  return 0;
}

KernelKind parseKernelKind(const std::string &text) {
  const std::string t = trim(text);
  if (t == "forward" || t == "fwd")
    return KernelKind::Forward;
  if (t == "backward-data" || t == "bwd-data")
    return KernelKind::BackwardData;
  if (t == "backward-weight" || t == "bwd-weight")
    return KernelKind::BackwardWeight;
  throw std::invalid_argument("unknown kernel kind '" + t +
                              "'; expected forward, backward-data or backward-weight");
}

std::vector<KernelKind> parseKernelKinds(const std::string &text) {
  const std::string t = trim(text);
  if (t == "all" || t == "train")
    return {kTunedKinds.begin(), kTunedKinds.end()};
  if (t == "infer")
    return {KernelKind::Forward};
  std::vector<KernelKind> kinds;
  for (const std::string &part : split(t, ',')) {
    const KernelKind k = parseKernelKind(part);
    if (std::find(kinds.begin(), kinds.end(), k) == kinds.end())
      kinds.push_back(k);
  }
  if (kinds.empty())
    throw std::invalid_argument("no kernel kind given; expected e.g. forward,backward-data");
  std::sort(kinds.begin(), kinds.end(),
            [](KernelKind a, KernelKind b) { return kindIndex(a) < kindIndex(b); });
  return kinds;
}

std::string Workload::str() const {
  std::ostringstream os;
  os << "N=" << batch << " H=" << height << " W=" << width << " density=" << density;
  return os.str();
}

Workload defaultWorkload(const KernelSpec &spec, int64_t batch, double density) {
  Workload w;
  w.batch = batch;
  w.height = spec.height > 0 ? spec.height : 56;
  w.width = spec.width > 0 ? spec.width : 56;
  w.density = spec.anySparse() ? density : 1.0;
  return w;
}

std::string checkWorkload(const KernelSpec &spec, const Workload &w) {
  if (w.batch <= 0)
    return "workload batch is " + std::to_string(w.batch) + ", expected a positive count";
  if (w.height <= 0 || w.width <= 0)
    return "workload size is " + std::to_string(w.height) + "x" + std::to_string(w.width) +
           ", expected positive sizes";
  if (spec.height > 0 && spec.height != w.height)
    return "workload height " + std::to_string(w.height) + " differs from the static spec's " +
           std::to_string(spec.height);
  if (spec.width > 0 && spec.width != w.width)
    return "workload width " + std::to_string(w.width) + " differs from the static spec's " +
           std::to_string(spec.width);
  if (!spec.branches.empty() && (spec.outHeight(w.height) <= 0 || spec.outWidth(w.width) <= 0))
    return "workload size " + std::to_string(w.height) + "x" + std::to_string(w.width) +
           " gives an empty output";
  if (!(w.density >= 0.0 && w.density <= 1.0))
    return "workload density is " + std::to_string(w.density) + ", expected 0..1";
  return {};
}

std::vector<codegen::BranchMask> randomMasks(const KernelSpec &spec, double density,
                                             uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<codegen::BranchMask> masks;
  for (const codegen::Branch &b : spec.branches) {
    if (b.dense) {
      masks.emplace_back();
      continue;
    }
    const int window = b.windowSize();
    const int live = std::clamp(static_cast<int>(std::lround(density * window)), 1, window);
    codegen::BranchMask mask(spec.channels * window, 0);
    std::vector<int> order(window);
    for (int64_t c = 0; c < spec.channels; ++c) {
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (int k = 0; k < live; ++k)
        mask[c * window + order[k]] = 1;
    }
    masks.push_back(std::move(mask));
  }
  return masks;
}

codegen::TapTable randomTapTable(const KernelSpec &spec, double density, uint32_t seed) {
  return codegen::buildTapTable(spec, randomMasks(spec, density, seed));
}

std::string problemSignature(const KernelSpec &specIn) {
  KernelSpec spec = specIn;
  spec.schedule = codegen::Schedule{};
  std::string sig = spec.signature();
  const std::string tail = " " + spec.schedule.str();
  if (sig.size() > tail.size() && sig.compare(sig.size() - tail.size(), tail.size(), tail) == 0)
    sig.erase(sig.size() - tail.size());
  return sig;
}

LayerDescription parseLayer(const std::string &text) {
  std::map<std::string, std::string> kv;
  for (const std::string &item : split(text, ',')) {
    if (item.empty())
      continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      throw std::invalid_argument("--layer: '" + item + "' is not key=value (in '" + text + "')");
    const std::string key = trim(item.substr(0, eq));
    static const char *known[] = {"channels", "size", "height",  "width", "branches", "density",
                                  "batch",    "mode", "outputs", "bias",  "dtype",    "dynamic"};
    if (std::find_if(std::begin(known), std::end(known), [&](const char *k) { return key == k; }) ==
        std::end(known))
      throw std::invalid_argument(
          "--layer: unknown key '" + key +
          "'; known keys: channels, size, height, width, branches, density, batch, mode, "
          "outputs, bias, dtype, dynamic");
    kv[key] = trim(item.substr(eq + 1));
  }
  if (!kv.count("channels"))
    throw std::invalid_argument(
        "--layer: channels=<count> is required (e.g. channels=124,size=56)");
  LayerDescription d;
  d.text = text;
  KernelSpec &s = d.spec;
  s.channels = parseInt("channels", kv["channels"], 1);
  int64_t h = 56, w = 56;
  if (kv.count("size"))
    h = w = parseInt("size", kv["size"], 1);
  if (kv.count("height"))
    h = parseInt("height", kv["height"], 1);
  if (kv.count("width"))
    w = parseInt("width", kv["width"], 1);
  double density = 1.0;
  if (kv.count("density")) {
    try {
      size_t used = 0;
      density = std::stod(kv["density"], &used);
      if (used != kv["density"].size())
        throw std::invalid_argument("");
    } catch (const std::exception &) {
      density = -1;
    }
    if (!(density > 0.0 && density <= 1.0))
      throw std::invalid_argument("--layer: density=" + kv["density"] +
                                  " is not a fraction in (0, 1]");
  }
  const bool sparse = density < 1.0;
  const std::string branches = kv.count("branches") ? kv["branches"] : "51x5+5x51+5x5";
  for (const std::string &b : split(branches, '+')) {
    const size_t x = b.find('x');
    const std::string notABranch = "--layer: branch '" + b + "' of branches=" + branches +
                                   " is not KHxKW with odd sizes (e.g. 51x5+5x51+5x5)";
    if (x == std::string::npos)
      throw std::invalid_argument(notABranch);
    int kh = 0, kw = 0;
    try {
      kh = static_cast<int>(parseInt("branch height", b.substr(0, x), 1));
      kw = static_cast<int>(parseInt("branch width", b.substr(x + 1), 1));
    } catch (const std::invalid_argument &) {
      throw std::invalid_argument(notABranch);
    }
    s.branches.push_back(codegen::Branch::same(kh, kw, !sparse));
  }
  const std::string mode = kv.count("mode") ? kv["mode"] : "train";
  if (mode != "train" && mode != "infer")
    throw std::invalid_argument("--layer: mode=" + mode + " is not train or infer");
  const bool training = mode == "train";
  s.perBranchOutputs = training;
  s.hasBias = !training;
  d.kinds = parseKernelKinds(mode);
  if (kv.count("outputs")) {
    if (kv["outputs"] != "sum" && kv["outputs"] != "branches")
      throw std::invalid_argument("--layer: outputs=" + kv["outputs"] + " is not sum or branches");
    s.perBranchOutputs = kv["outputs"] == "branches";
    if (s.perBranchOutputs)
      s.hasBias = false;
  }
  if (kv.count("bias"))
    s.hasBias = parseBool("bias", kv["bias"]);
  if (kv.count("dtype")) {
    const std::string &t = kv["dtype"];
    const std::optional<codegen::ElementType> type = codegen::parseElementType(t);
    if (!type)
      throw std::invalid_argument("--layer: dtype=" + t + " is not " +
                                  codegen::elementTypeChoices());
    s.elementType = *type;
  }
  const bool dynamic = kv.count("dynamic") && parseBool("dynamic", kv["dynamic"]);
  s.height = dynamic ? -1 : h;
  s.width = dynamic ? -1 : w;
  if (std::string err = s.validate(); !err.empty())
    throw std::invalid_argument("--layer '" + text + "': " + err);
  d.workload.batch = kv.count("batch") ? parseInt("batch", kv["batch"], 1) : 8;
  d.workload.height = h;
  d.workload.width = w;
  d.workload.density = sparse ? density : 1.0;
  if (std::string err = checkWorkload(s, d.workload); !err.empty())
    throw std::invalid_argument("--layer '" + text + "': " + err);
  return d;
}

std::vector<LayerDescription> slakTinyLayers(double density, bool training, int64_t batch) {
  struct Stage {
    int64_t channels, size;
    int kernel;
  };
  const Stage stages[] = {{124, 56, 51}, {249, 28, 49}, {499, 14, 47}, {998, 7, 13}};
  std::vector<LayerDescription> layers;
  for (const Stage &st : stages) {
    std::ostringstream os;
    os << "channels=" << st.channels << ",size=" << st.size << ",branches=" << st.kernel << "x5+5x"
       << st.kernel << "+5x5,density=" << density << ",batch=" << batch
       << ",mode=" << (training ? "train" : "infer");
    layers.push_back(parseLayer(os.str()));
  }
  return layers;
}

} // namespace slak::autotune
