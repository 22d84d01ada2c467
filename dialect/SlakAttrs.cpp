// Parsing, printing and verification of the slak attributes. They all use
// the form `#slak.name<key = value, ...>` with keys in any order.
#include "dialect/SlakAttrs.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

using namespace mlir;
using namespace mlir::slak;

#define GET_ATTRDEF_CLASSES
#include "dialect/SlakAttrs.cpp.inc"

void SlakDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialect/SlakAttrs.cpp.inc"
      >();
}

namespace {

/// Parses `<key = value, ...>`: each key once, all of `required` present.
/// `parseValue` parses the value of one key and fails on an unknown key.
ParseResult parseKeyValues(AsmParser &parser, StringRef attrName, ArrayRef<StringRef> required,
                           function_ref<ParseResult(StringRef key, SMLoc loc)> parseValue) {
  llvm::StringSet<> seen;
  if (parser.parseLess())
    return failure();
  if (failed(parser.parseOptionalGreater())) {
    do {
      SMLoc loc = parser.getCurrentLocation();
      StringRef key;
      if (parser.parseKeyword(&key) || parser.parseEqual())
        return failure();
      if (!seen.insert(key).second)
        return parser.emitError(loc) << "key '" << key << "' appears twice in " << attrName;
      if (parseValue(key, loc))
        return failure();
    } while (succeeded(parser.parseOptionalComma()));
    if (parser.parseGreater())
      return failure();
  }
  for (StringRef key : required)
    if (!seen.contains(key))
      return parser.emitError(parser.getCurrentLocation())
             << attrName << " is missing the key '" << key << "'";
  return success();
}

ParseResult unknownKey(AsmParser &parser, SMLoc loc, StringRef attrName, StringRef key,
                       ArrayRef<StringRef> known) {
  auto diag = parser.emitError(loc)
              << "unknown key '" << key << "' in " << attrName << "; expected one of: ";
  llvm::interleaveComma(known, diag);
  return failure();
}

/// `[a, b, ...]` with exactly values.size() integers.
ParseResult parseIntList(AsmParser &parser, StringRef key, MutableArrayRef<int64_t> values) {
  SMLoc loc = parser.getCurrentLocation();
  SmallVector<int64_t> parsed;
  if (parser.parseCommaSeparatedList(AsmParser::Delimiter::Square,
                                     [&]() { return parser.parseInteger(parsed.emplace_back()); }))
    return failure();
  if (parsed.size() != values.size())
    return parser.emitError(loc) << "'" << key << "' takes " << values.size() << " integers, found "
                                 << parsed.size();
  llvm::copy(parsed, values.begin());
  return success();
}

ParseResult parseBool(AsmParser &parser, bool &value) {
  SMLoc loc = parser.getCurrentLocation();
  StringRef word;
  if (parser.parseKeyword(&word))
    return failure();
  if (word != "true" && word != "false")
    return parser.emitError(loc) << "expected true or false, found '" << word << "'";
  value = word == "true";
  return success();
}

/// Shortest text that reads back as the same double, always with a '.' or
/// an exponent so that MLIR's parser takes it as a float.
std::string doubleText(double value) {
  char text[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(text, sizeof(text), "%.*g", precision, value);
    if (std::strtod(text, nullptr) == value)
      break;
  }
  std::string result(text);
  if (result.find_first_of(".eEn") == std::string::npos)
    result += ".0";
  return result;
}

} // namespace

//===----------------------------------------------------------------------===//
// #slak.branch_taps
//===----------------------------------------------------------------------===//

Attribute BranchTapsAttr::parse(AsmParser &parser, Type) {
  static constexpr StringLiteral kName = "#slak.branch_taps";
  const SmallVector<StringRef> keys = {"kernel", "nnz", "mean", "density", "window", "form"};
  int64_t kernel[2] = {0, 0}, nnz[2] = {0, 0}, window[4] = {0, 0, 0, 0};
  double mean = 0, density = 0;
  bool table = false;
  if (parseKeyValues(parser, kName, keys, [&](StringRef key, SMLoc loc) -> ParseResult {
        if (key == "kernel")
          return parseIntList(parser, key, kernel);
        if (key == "nnz")
          return parseIntList(parser, key, nnz);
        if (key == "window")
          return parseIntList(parser, key, window);
        if (key == "mean")
          return parser.parseFloat(mean);
        if (key == "density")
          return parser.parseFloat(density);
        if (key == "form") {
          StringRef form;
          if (parser.parseKeyword(&form))
            return failure();
          if (form != "dense" && form != "table")
            return parser.emitError(loc) << "form is '" << form << "', expected dense or table";
          table = form == "table";
          return success();
        }
        return unknownKey(parser, loc, kName, key, keys);
      }))
    return {};
  return parser.getChecked<BranchTapsAttr>(parser.getContext(), kernel[0], kernel[1], nnz[0],
                                           nnz[1], APFloat(mean), APFloat(density), window[0],
                                           window[1], window[2], window[3], table);
}

void BranchTapsAttr::print(AsmPrinter &printer) const {
  printer << "<kernel = [" << getKernelH() << ", " << getKernelW() << "], nnz = [" << getNnzMin()
          << ", " << getNnzMax() << "], mean = ";
  printer << doubleText(getNnzMean().convertToDouble());
  printer << ", density = ";
  printer << doubleText(getDensity().convertToDouble());
  printer << ", window = [" << getRowBegin() << ", " << getRowEnd() << ", " << getColBegin() << ", "
          << getColEnd() << "], form = " << (getTableForm() ? "table" : "dense") << ">";
}

LogicalResult BranchTapsAttr::verify(function_ref<InFlightDiagnostic()> emitError, int64_t kernelH,
                                     int64_t kernelW, int64_t nnzMin, int64_t nnzMax,
                                     APFloat nnzMeanValue, APFloat densityValue, int64_t rowBegin,
                                     int64_t rowEnd, int64_t colBegin, int64_t colEnd, bool) {
  const double nnzMean = nnzMeanValue.convertToDouble();
  const double density = densityValue.convertToDouble();
  if (kernelH <= 0 || kernelW <= 0 || kernelH % 2 == 0 || kernelW % 2 == 0)
    return emitError() << "#slak.branch_taps kernel is " << kernelH << "x" << kernelW
                       << ", expected odd positive sizes";
  if (kernelH > 65535 || kernelW > 65535)
    return emitError() << "#slak.branch_taps kernel is " << kernelH << "x" << kernelW
                       << ", at most 65535 per axis is supported (taps are 16-bit)";
  const int64_t window = kernelH * kernelW;
  if (nnzMin < 0 || nnzMin > nnzMax || nnzMax > window)
    return emitError() << "#slak.branch_taps nnz is [" << nnzMin << ", " << nnzMax
                       << "], expected 0 <= min <= max <= " << window << " (KH*KW)";
  if (nnzMean < static_cast<double>(nnzMin) || nnzMean > static_cast<double>(nnzMax))
    return emitError() << "#slak.branch_taps mean is " << doubleText(nnzMean)
                       << ", expected a value in [" << nnzMin << ", " << nnzMax << "]";
  if (!(density >= 0.0 && density <= 1.0))
    return emitError() << "#slak.branch_taps density is " << doubleText(density)
                       << ", expected a value in [0, 1]";
  if (rowBegin < 0 || rowBegin > rowEnd || rowEnd > kernelH || colBegin < 0 || colBegin > colEnd ||
      colEnd > kernelW)
    return emitError() << "#slak.branch_taps window is [" << rowBegin << ", " << rowEnd << ", "
                       << colBegin << ", " << colEnd << "], expected rows within [0, " << kernelH
                       << "] and columns within [0, " << kernelW << "], begin <= end";
  return success();
}

//===----------------------------------------------------------------------===//
// #slak.taps
//===----------------------------------------------------------------------===//

Attribute TapsAttr::parse(AsmParser &parser, Type) {
  static constexpr StringLiteral kName = "#slak.taps";
  const SmallVector<StringRef> keys = {"branches", "table", "channel_order"};
  ArrayAttr branches;
  std::string table;
  SmallVector<int32_t> order;
  if (parseKeyValues(parser, kName, {"branches"}, [&](StringRef key, SMLoc loc) -> ParseResult {
        if (key == "branches")
          return parser.parseAttribute(branches);
        if (key == "table")
          return parser.parseString(&table);
        if (key == "channel_order")
          return parser.parseCommaSeparatedList(AsmParser::Delimiter::Square, [&]() {
            return parser.parseInteger(order.emplace_back());
          });
        return unknownKey(parser, loc, kName, key, keys);
      }))
    return {};
  MLIRContext *context = parser.getContext();
  return parser.getChecked<TapsAttr>(context, branches, StringAttr::get(context, table),
                                     order.empty() ? DenseI32ArrayAttr()
                                                   : DenseI32ArrayAttr::get(context, order));
}

void TapsAttr::print(AsmPrinter &printer) const {
  printer << "<branches = " << getBranches();
  if (getTable() && !getTable().getValue().empty())
    printer << ", table = \"" << getTable().getValue() << "\"";
  if (getChannelOrder()) {
    printer << ", channel_order = [";
    llvm::interleaveComma(getChannelOrder().asArrayRef(), printer);
    printer << "]";
  }
  printer << ">";
}

LogicalResult TapsAttr::verify(function_ref<InFlightDiagnostic()> emitError, ArrayAttr branches,
                               StringAttr, DenseI32ArrayAttr channelOrder) {
  if (!branches)
    return emitError() << "#slak.taps needs a 'branches' list";
  for (auto [i, branch] : llvm::enumerate(branches))
    if (!isa<BranchTapsAttr>(branch))
      return emitError() << "#slak.taps branch " << i << " is " << branch
                         << ", expected a #slak.branch_taps";
  if (channelOrder) {
    // A permutation of 0..C-1.
    ArrayRef<int32_t> order = channelOrder.asArrayRef();
    std::vector<bool> seen(order.size(), false);
    for (int32_t c : order) {
      if (c < 0 || static_cast<size_t>(c) >= order.size() || seen[c])
        return emitError() << "#slak.taps channel_order is not a permutation of 0.."
                           << order.size() - 1 << " (entry " << c << ")";
      seen[c] = true;
    }
  }
  return success();
}

//===----------------------------------------------------------------------===//
// #slak.schedule
//===----------------------------------------------------------------------===//

Attribute ScheduleAttr::parse(AsmParser &parser, Type) {
  static constexpr StringLiteral kName = "#slak.schedule";
  const SmallVector<StringRef> keys = {"tile",           "block",       "stage_input",
                                       "stage_taps",     "masked_walk", "weight_split",
                                       "weight_threads", "weight_tile", "weight_rows_per_thread",
                                       "origin"};
  // Defaults are codegen::Schedule's.
  int64_t tile[2] = {0, 0}, block[2] = {0, 0}, weightTile[2] = {8, 32};
  int64_t weightSplit = 8, weightThreads = 256, weightRows = 8;
  bool stageInput = true, stageTaps = true, maskedWalk = false;
  std::string origin = "default";
  if (parseKeyValues(parser, kName, {"tile", "block"},
                     [&](StringRef key, SMLoc loc) -> ParseResult {
                       if (key == "tile")
                         return parseIntList(parser, key, tile);
                       if (key == "block")
                         return parseIntList(parser, key, block);
                       if (key == "weight_tile")
                         return parseIntList(parser, key, weightTile);
                       if (key == "stage_input")
                         return parseBool(parser, stageInput);
                       if (key == "stage_taps")
                         return parseBool(parser, stageTaps);
                       if (key == "masked_walk")
                         return parseBool(parser, maskedWalk);
                       if (key == "weight_split")
                         return parser.parseInteger(weightSplit);
                       if (key == "weight_threads")
                         return parser.parseInteger(weightThreads);
                       if (key == "weight_rows_per_thread")
                         return parser.parseInteger(weightRows);
                       if (key == "origin")
                         return parser.parseString(&origin);
                       return unknownKey(parser, loc, kName, key, keys);
                     }))
    return {};
  return parser.getChecked<ScheduleAttr>(parser.getContext(), tile[0], tile[1], block[0], block[1],
                                         stageInput, stageTaps, maskedWalk, weightSplit,
                                         weightThreads, weightTile[0], weightTile[1], weightRows,
                                         StringAttr::get(parser.getContext(), origin));
}

void ScheduleAttr::print(AsmPrinter &printer) const {
  auto flag = [](bool b) { return b ? "true" : "false"; };
  printer << "<tile = [" << getTileH() << ", " << getTileW() << "], block = [" << getBlockH()
          << ", " << getBlockW() << "], stage_input = " << flag(getStageInput())
          << ", stage_taps = " << flag(getStageTaps())
          << ", masked_walk = " << flag(getMaskedWalk()) << ", weight_split = " << getWeightSplit()
          << ", weight_threads = " << getWeightThreads() << ", weight_tile = [" << getWeightTileH()
          << ", " << getWeightTileW() << "], weight_rows_per_thread = " << getWeightRowsPerThread()
          << ", origin = \"" << getOrigin().getValue() << "\">";
}

LogicalResult ScheduleAttr::verify(function_ref<InFlightDiagnostic()> emitError, int64_t tileH,
                                   int64_t tileW, int64_t blockH, int64_t blockW, bool, bool, bool,
                                   int64_t weightSplit, int64_t weightThreads, int64_t weightTileH,
                                   int64_t weightTileW, int64_t weightRows, StringAttr origin) {
  if (tileH <= 0 || tileW <= 0 || blockH <= 0 || blockW <= 0)
    return emitError() << "#slak.schedule tile [" << tileH << ", " << tileW << "] and block ["
                       << blockH << ", " << blockW << "] must be positive";
  if (tileH % blockH != 0 || tileW % blockW != 0)
    return emitError() << "#slak.schedule tile [" << tileH << ", " << tileW
                       << "] is not a multiple of block [" << blockH << ", " << blockW
                       << "]; each thread computes tile/block outputs";
  // Each side first: the product of two large ones overflows int64_t.
  if (blockH > 1024 || blockW > 1024 || blockH * blockW > 1024)
    return emitError() << "#slak.schedule block [" << blockH << ", " << blockW << "] has "
                       << (blockH > 1024 || blockW > 1024 ? "more than 1024"
                                                          : std::to_string(blockH * blockW))
                       << " threads, at most 1024 are allowed";
  // codegen::Schedule holds ints: a larger value would be cut, not refused.
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  if (tileH > kMaxInt || tileW > kMaxInt)
    return emitError() << "#slak.schedule tile [" << tileH << ", " << tileW
                       << "] is too large, at most " << kMaxInt << " per side";
  if (weightSplit > kMaxInt || weightTileH > kMaxInt || weightTileW > kMaxInt ||
      weightRows > kMaxInt)
    return emitError() << "#slak.schedule weight_split " << weightSplit << ", weight_tile ["
                       << weightTileH << ", " << weightTileW << "] or weight_rows_per_thread "
                       << weightRows << " is too large, at most " << kMaxInt;
  if (weightSplit <= 0)
    return emitError() << "#slak.schedule weight_split is " << weightSplit
                       << ", expected a positive value";
  if (weightThreads <= 0 || weightThreads > 1024 || (weightThreads & (weightThreads - 1)) != 0)
    return emitError() << "#slak.schedule weight_threads is " << weightThreads
                       << ", expected a power of two <= 1024";
  if (weightTileH <= 0 || weightTileW <= 0 || weightRows <= 0)
    return emitError() << "#slak.schedule weight_tile [" << weightTileH << ", " << weightTileW
                       << "] and weight_rows_per_thread " << weightRows << " must be positive";
  StringRef o = origin ? origin.getValue() : "";
  if (o != "default" && o != "model" && o != "measured")
    return emitError() << "#slak.schedule origin is \"" << o
                       << "\", expected \"default\", \"model\" or \"measured\"";
  return success();
}
