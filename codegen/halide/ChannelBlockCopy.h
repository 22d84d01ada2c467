// The copy of an image into a channels-last pipeline's padded plane of
// channel blocks, shared by the channels-last conv and weight-gradient
// pipelines.
#pragma once

#include <Halide.h>

#include <functional>
#include <string>

namespace slak::codegen::cpu {

/// Adds two updates to `plane(lane, pixel, cb, n)` (pure definition already
/// given) that copy `in` (dims c, x, y, n, any strides) into it: lane l of
/// block cb holds channel cb * V + l, and image pixel (column, row) of the
/// plane's orientation (`transposed` swaps x and y) lands at
/// `pixel(column, row)`. Whole blocks come first, one pixel vector at a time
/// (their predicate names only cb, so the lane loop keeps its constant
/// extent and vectorises); a partial last block follows lane by lane.
/// Returns the (lane, column, row) domain of the whole-block update, the
/// plane's update(0), for the caller's schedule.
Halide::RDom copyChannelBlocks(Halide::Func &plane, const Halide::ImageParam &in, bool transposed,
                               int V, const Halide::Var &cb, const Halide::Var &n,
                               const std::function<Halide::Expr(Halide::Expr, Halide::Expr)> &pixel,
                               const std::string &name);

} // namespace slak::codegen::cpu
