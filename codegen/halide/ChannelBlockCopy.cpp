#include "codegen/halide/ChannelBlockCopy.h"

using namespace Halide;

namespace slak::codegen::cpu {

RDom copyChannelBlocks(Func &plane, const ImageParam &in, bool transposed, int V, const Var &cb,
                       const Var &n, const std::function<Expr(Expr, Expr)> &pixel,
                       const std::string &name) {
  const Expr channels = in.dim(0).extent();
  const Expr width = transposed ? in.dim(2).extent() : in.dim(1).extent();
  const Expr height = transposed ? in.dim(1).extent() : in.dim(2).extent();
  auto copy = [&](RDom rc, const Expr &predicate) {
    rc.where(predicate);
    // The predicate keeps the lanes past the last channel out; the promise
    // tells bounds inference so (the load stays one dense vector).
    Expr ch = unsafe_promise_clamped(cb * V + rc.x, 0, channels - 1);
    Expr value = transposed ? in(ch, rc.z, rc.y, n) : in(ch, rc.y, rc.z, n);
    plane(rc.x, pixel(rc.y, rc.z), cb, n) = value;
    return rc;
  };
  RDom whole(0, V, 0, width, 0, height, name);
  RDom part(0, V, 0, width, 0, height, name + "Part");
  copy(whole, cb * V + V <= channels);
  copy(part, cb * V + V > channels && cb * V + part.x < channels);
  return whole;
}

} // namespace slak::codegen::cpu
