// Parsing, printing and verification of the slak attributes. They all use
// the form `#slak.name<key = value, ...>` with keys in any order; the keys,
// defaults and legal values of #slak.schedule come from codegen's schedule
// field table.
#include "dialect/SlakAttrs.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

using namespace mlir;
using namespace mlir::slak;
using ::slak::codegen::FieldKind;
using ::slak::codegen::FieldSpelling;
using ::slak::codegen::FieldValues;
using ::slak::codegen::Schedule;
using ::slak::codegen::ScheduleField;
using ::slak::codegen::ScheduleTable;

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

/// One of two keywords: `isSecond` tells which.
ParseResult parseEitherKeyword(AsmParser &parser, StringRef key, StringRef first, StringRef second,
                               bool &isSecond) {
  SMLoc loc = parser.getCurrentLocation();
  StringRef word;
  if (parser.parseKeyword(&word))
    return failure();
  if (word != first && word != second)
    return parser.emitError(loc) << key << " is '" << word << "', expected " << first << " or "
                                 << second;
  isSecond = word == second;
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
        if (key == "form")
          return parseEitherKeyword(parser, key, "dense", "table", table);
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
  const ScheduleTable<Schedule> &table = ::slak::codegen::scheduleFields();
  const StringRef name = table.irName;
  SmallVector<StringRef> keys, required;
  for (const ScheduleField<Schedule> &f : table.fields) {
    keys.push_back(f.irKey);
    if (f.has(::slak::codegen::kRequiredInIr))
      required.push_back(f.irKey);
  }
  keys.push_back("origin");
  FieldValues values = fieldValues(table, Schedule{});
  std::string origin = "default";
  if (parseKeyValues(parser, name, required, [&](StringRef key, SMLoc loc) -> ParseResult {
        if (key == "origin")
          return parser.parseString(&origin);
        size_t i = 0;
        for (const ScheduleField<Schedule> &f : table.fields) {
          if (key == f.irKey) {
            switch (f.kind) {
            case FieldKind::Int:
              return parser.parseInteger(values[i]);
            case FieldKind::Pair:
              return parseIntList(parser, key, MutableArrayRef<int64_t>(&values[i], 2));
            case FieldKind::Flag: {
              bool isFalse = false;
              if (parseEitherKeyword(parser, key, "true", "false", isFalse))
                return failure();
              values[i] = !isFalse;
              return success();
            }
            }
          }
          i += f.components();
        }
        return unknownKey(parser, loc, name, key, keys);
      }))
    return {};
  MLIRContext *context = parser.getContext();
  return parser.getChecked<ScheduleAttr>(context, values, StringAttr::get(context, origin));
}

void ScheduleAttr::print(AsmPrinter &printer) const {
  const ScheduleTable<Schedule> &table = ::slak::codegen::scheduleFields();
  ArrayRef<int64_t> values = getValues();
  printer << "<";
  size_t i = 0;
  for (const ScheduleField<Schedule> &f : table.fields) {
    printer << f.irKey << " = ";
    if (f.kind == FieldKind::Flag)
      printer << (values[i] ? "true" : "false");
    else if (f.kind == FieldKind::Int)
      printer << values[i];
    else
      printer << "[" << values[i] << ", " << values[i + 1] << "]";
    printer << ", ";
    i += f.components();
  }
  printer << "origin = \"" << getOrigin().getValue() << "\">";
}

LogicalResult ScheduleAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                   ArrayRef<int64_t> values, StringAttr origin) {
  const ScheduleTable<Schedule> &table = ::slak::codegen::scheduleFields();
  const std::string invalid =
      validateFields(table, FieldValues(values.begin(), values.end()), FieldSpelling::Ir);
  if (!invalid.empty())
    return emitError() << invalid;
  StringRef o = origin ? origin.getValue() : "";
  if (o != "default" && o != "model" && o != "measured")
    return emitError() << table.irName << " origin is \"" << o
                       << "\", expected \"default\", \"model\" or \"measured\"";
  return success();
}

ScheduleAttr ScheduleAttr::get(MLIRContext *context, const Schedule &schedule, StringRef origin) {
  return Base::get(context,
                   ArrayRef<int64_t>(fieldValues(::slak::codegen::scheduleFields(), schedule)),
                   StringAttr::get(context, origin));
}

Schedule ScheduleAttr::getSchedule() const {
  ArrayRef<int64_t> values = getValues();
  return scheduleFromValues(::slak::codegen::scheduleFields(),
                            FieldValues(values.begin(), values.end()));
}
