#include "codegen/WeightGradEmitter.h"

#include <algorithm>

#include "codegen/BufferLayout.h"

namespace slak::codegen {
namespace {

class WeightGradEmitter : KernelText {
public:
  explicit WeightGradEmitter(const KernelPlan &plan)
      : KernelText(plan), wp_(plan.weightGrad), nhwc_(plan.spec.channelsLast()),
        threads_(plan.weightGrad.channelThreads) {}

  void run(Code &c) {
    if (wp_.blocked)
      blocked(c);
    else
      tapTable(c);
    reduce(c);
  }

private:
  /// The signature and the (channel, split) / tile-range prologue of phase
  /// 1; leaves the body open.
  void prologue(Code &c) {
    const int TH = s_.weightTileH, TW = s_.weightTileW;
    const int C = static_cast<int>(spec_.channels);
    signature(c, KernelKind::BackwardWeight);
    c.open("");
    sizes(c);
    c("const int N = batch;");
    c("const int blockId = (int)SLAK_BLOCK_ID;");
    if (nhwc_) {
      // Channel lane fastest; `tid` counts the threads of one channel.
      const int L = wp_.channelLanes, groups = (C + L - 1) / L;
      c("const int cl = (int)SLAK_THREAD_ID % ", L, ";");
      c("const int tid = (int)SLAK_THREAD_ID / ", L, ";");
      c("const int c = (blockId % ", groups, ") * ", L, " + cl;");
      c("const int cw = c < ", C, " ? c : ", C - 1, "; /* a real channel's taps */");
      c("const int split = blockId / ", groups, ";");
    } else {
      c("const int tid = SLAK_THREAD_ID;");
      c("const int c = blockId % ", C, ";");
      c("const int split = blockId / ", C, ";");
    }
    c("const int tilesW = (WO + ", TW - 1, ") / ", TW, ";");
    c("const int tilesPerImage = ((HO + ", TH - 1, ") / ", TH, ") * tilesW;");
    c("const slak_i64 tilesTotal = (slak_i64)N * tilesPerImage;");
    c("const slak_i64 tBegin = tilesTotal * split / ", s_.weightSplit, ";");
    c("const slak_i64 tEnd = tilesTotal * (split + 1) / ", s_.weightSplit, ";");
    c("SLAK_SHARED float sm[", wp_.smElements, "];");
  }

  /// Opens the loop over this split's dy tiles and stages the x tile at
  /// sm[0] and the dy tile(s) after it.
  void tileLoop(Code &c) {
    const int threads = wp_.threads, TH = s_.weightTileH, TW = s_.weightTileW;
    const int C = static_cast<int>(spec_.channels);
    const int SW = wp_.tileCols, xSize = wp_.xElements;
    c.open("for (slak_i64 t = tBegin; t < tEnd; ++t)");
    c("const int n = (int)(t / tilesPerImage);");
    c("const int tr = (int)(t - (slak_i64)n * tilesPerImage);");
    c("const int tileRow = tr / tilesW;");
    c("const int i0 = tileRow * ", TH, ";");
    c("const int j0 = (tr - tileRow * tilesW) * ", TW, ";");
    if (nhwc_) { // x and dy are read from global memory, coalesced across channels
      c("const slak_i64 xb = (slak_i64)n * H * W * ", C, ";");
      return;
    }
    c("SLAK_BARRIER(); /* the previous tile is no longer read */");
    c("const slak_i64 xb = ((slak_i64)n * ", C, " + c) * H * W;");
    c.open("for (int e = tid; e < ", xSize, "; e += ", threads, ")");
    c("const int r = e / ", SW, ";");
    c("sm[e] = ",
      ld2("x", "xb", cat("i0 + (", wp_.halo.minRow, ") + r"),
          cat("j0 + (", wp_.halo.minCol, ") + e - r * ", SW), "H", "W"),
      ";");
    c.close();
    for (int d = 0; d < wp_.numDy; ++d) {
      c.open("");
      c("const slak_i64 db = ((slak_i64)", d, " * N * ", C, " + (slak_i64)n * ", C,
        " + c) * HO * WO;");
      c.open("for (int e = tid; e < ", TH * TW, "; e += ", threads, ")");
      c("const int r = e / ", TW, ";");
      c("sm[", xSize + d * TH * TW,
        " + e] = ", ld2("dy", "db", "i0 + r", cat("j0 + e - r * ", TW), "HO", "WO"), ";");
      c.close();
      c.close();
    }
    c("SLAK_BARRIER();");
  }

  /// Writes the channel's whole window of every branch to this split's
  /// partial sums: `sumUp(b)` writes what position e of branch b needs,
  /// `value(b)` is its partial sum.
  template <typename SumUp, typename Value>
  void storePartials(Code &c, const SumUp &sumUp, const Value &value) {
    const int64_t wcount = weightCount(spec_);
    for (int b = 0; b < static_cast<int>(spec_.branches.size()); ++b) {
      const int window = spec_.branches[b].windowSize();
      c.open("for (int e = tid; e < ", window, "; e += ", threads_, ")");
      sumUp(b);
      if (nhwc_)
        c("if (c < ", spec_.channels, ")");
      c("workspace[(slak_i64)split * ", wcount, " + ", weightOffset(spec_, b), " + (slak_i64)c * ",
        window, " + e] = ", value(b), ";");
      c.close();
    }
  }

  /// (x offset, window position) of a tap u, v of branch b in the staged
  /// tile: the relation both phase-1 forms store per tap or tap block.
  std::string tileOffset(const Branch &br, const std::string &u) const {
    return cat("(", u, " + ", -br.padH - wp_.halo.minRow, ") * ", wp_.tileCols, " + v + ",
               -br.padW - wp_.halo.minCol);
  }

  /// Phase 1 when every branch computes its whole window: threads own blocks
  /// of P vertically adjacent taps and walk each dy column with a rotating
  /// register window of x rows, so each loaded x value feeds P taps. Dead
  /// taps of sparse branches are zeroed at the end unless denseWeightGrad.
  void blocked(Code &c) {
    const int threads = threads_, TH = s_.weightTileH, TW = s_.weightTileW;
    const int P = wp_.tapsPerThread;
    const int C = static_cast<int>(spec_.channels);
    const int numBranches = static_cast<int>(spec_.branches.size());
    const int numBlocks = wp_.tapBlocks, slots = wp_.slots, lanes = wp_.lanes;
    const int groups = wp_.pixelGroups, maxTaps = wp_.windowTaps;
    const int SW = wp_.tileCols, xSize = wp_.xElements;
    const bool perTapDy = wp_.perTapDy();

    c("");
    c("/* backward-weight phase 1: per (channel, split) partial sums over ", TH, "x", TW,
      " dy tiles; ", numBlocks, " blocks of ", P, " taps, ", slots, " per thread, ", groups,
      " pixel group(s) */");
    prologue(c);
    c("SLAK_SHARED int boff[", numBlocks, "];");  // x offset of the block's first tap
    c("SLAK_SHARED int bpos[", numBlocks, "];");  // window position of the first tap
    c("SLAK_SHARED int brows[", numBlocks, "];"); // taps in the block (<= P)
    c("SLAK_SHARED int bkw[", numBlocks, "];");   // window row stride
    if (perTapDy)
      c("SLAK_SHARED int bdy[", numBlocks, "];");
    if (wp_.needLive)
      c("SLAK_SHARED int live[", wp_.channelLanes * maxTaps, "];");
    int start = 0;
    c.open("for (int k = tid; k < ", numBlocks, "; k += ", threads, ")");
    for (int b = 0; b < numBranches; ++b) {
      const Branch &br = spec_.branches[b];
      const int count = (br.kernelH + P - 1) / P * br.kernelW;
      c.open(b ? "else " : "", "if (k < ", start + count, ")");
      c("const int rb = (k - ", start, ") / ", br.kernelW, ";");
      c("const int v = (k - ", start, ") - rb * ", br.kernelW, ";");
      c("const int u0 = rb * ", P, ";");
      c("boff[k] = ", tileOffset(br, "u0"), ";");
      c("bpos[k] = ", wp_.windowOffsets[b], " + u0 * ", br.kernelW, " + v;");
      c("brows[k] = ", br.kernelH, " - u0 < ", P, " ? ", br.kernelH, " - u0 : ", P, ";");
      c("bkw[k] = ", br.kernelW, ";");
      if (perTapDy)
        c("bdy[k] = ", nhwc_ ? b : xSize + b * TH * TW, ";");
      c.close();
      start += count;
    }
    c.close();
    if (wp_.needLive) {
      for (int b = 0; b < numBranches; ++b) {
        const Branch &br = spec_.branches[b];
        c.open("for (int e = tid; e < ", br.windowSize(), "; e += ", threads, ")");
        c("live[", lanePart(maxTaps), wp_.windowOffsets[b],
          " + e] = ", !br.dense && !spec_.denseWeightGrad ? 0 : 1, ";");
        c.close();
      }
      c("SLAK_BARRIER(); /* all taps dead before the live ones are marked */");
      for (int b = 0; b < numBranches; ++b) {
        const Branch &br = spec_.branches[b];
        if (br.dense || spec_.denseWeightGrad)
          continue;
        c.open("");
        c("const int tb = tapOffsets[", b * C, " + ", tapChannel(), "];");
        c("const int nt = tapOffsets[", b * C, " + ", tapChannel(), " + 1] - tb;");
        c.open("for (int k = tid; k < nt; k += ", threads, ")");
        c("const int t = taps[tb + k];");
        c("live[", lanePart(maxTaps), wp_.windowOffsets[b], " + (t >> 16) * ", br.kernelW,
          " + (t & 0xffff)] = 1;");
        c.close();
        c.close();
      }
    }
    c("SLAK_BARRIER();");
    c("const int lane = tid & ", lanes - 1, ";");
    c("const int group = tid / ", lanes, ";");
    for (int j = 0; j < slots; ++j) {
      const bool allValid = (j + 1) * lanes <= numBlocks;
      c("const int k", j, " = lane + ", j * lanes, ";");
      c("const int ok", j, " = ", allValid ? std::string("1") : cat("k", j, " < ", numBlocks), ";");
      c("const int o", j, " = ok", j, " ? boff[k", j, "] : 0;");
      if (perTapDy)
        c("const int d", j, " = ok", j, " ? bdy[k", j, "] : ", nhwc_ ? 0 : xSize, ";");
      if (nhwc_) { // the block's first tap in tile rows and columns
        c("const int or", j, " = o", j, " / ", SW, ";");
        c("const int oc", j, " = o", j, " - or", j, " * ", SW, ";");
      }
      std::string acc = "float ";
      for (int q = 0; q < P; ++q)
        acc += cat(q ? ", " : "", "a", j, "_", q, " = 0.0f");
      c(acc, ";");
    }
    tileLoop(c);
    c.open("for (int q = group; q < ", TW, "; q += ", groups, ")");
    for (int j = 0; j < slots; ++j) {
      std::string regs = "float ";
      for (int q = 0; q < P; ++q)
        regs += cat(q ? ", " : "", "x", j, "_", q);
      c(regs, ";");
      for (int r = 0; r + 1 < P; ++r)
        c("x", j, "_", r, " = ",
          xAt(cat("o", j, " + q + ", r * SW), cat("or", j, " + ", r), cat("oc", j, " + q")), ";");
    }
    for (int i = 0; i < TH; ++i) {
      c.open("");
      const std::string dyPos = cat(i * TW, " + q");
      if (!perTapDy)
        c("const float g = ", dyAt(cat(xSize, " + ", dyPos), "0", std::to_string(i), "q"), ";");
      for (int j = 0; j < slots; ++j) {
        c("x", j, "_", (i + P - 1) % P, " = ",
          xAt(cat("o", j, " + q + ", (i + P - 1) * SW), cat("or", j, " + ", i + P - 1),
              cat("oc", j, " + q")),
          ";");
        if (perTapDy)
          c("const float g", j, " = ",
            dyAt(cat("d", j, " + ", dyPos), cat("d", j), std::to_string(i), "q"), ";");
        for (int q = 0; q < P; ++q)
          c("a", j, "_", q, " += ", perTapDy ? cat("g", j) : std::string("g"), " * x", j, "_",
            (i + q) % P, ";");
      }
      c.close();
    }
    c.close();
    c.close();
    // Fixed-order reduction over the pixel groups; each window position
    // belongs to exactly one (block, row).
    c("SLAK_BARRIER();");
    for (int j = 0; j < slots; ++j) {
      c.open("if (ok", j, ")");
      c("const int base = ", lanePart(groups * maxTaps), "group * ", maxTaps, " + bpos[k", j, "];");
      c("const int rows = brows[k", j, "];");
      c("const int kw = bkw[k", j, "];");
      for (int q = 0; q < P; ++q)
        c("if (", q, " < rows) sm[base + ", q, " * kw] = a", j, "_", q, ";");
      c.close();
    }
    c("SLAK_BARRIER();");
    storePartials(
        c,
        [&](int b) {
          c("float sum = 0.0f;");
          c("for (int g = 0; g < ", groups, "; ++g) sum += sm[", lanePart(groups * maxTaps), "g * ",
            maxTaps, " + ", wp_.windowOffsets[b], " + e];");
        },
        [&](int b) {
          return wp_.needLive
                     ? cat("live[", lanePart(maxTaps), wp_.windowOffsets[b], " + e] ? sum : 0.0f")
                     : std::string("sum");
        });
    c.close();
  }

  /// Phase 1 when some branch walks its tap table: threads own live taps of
  /// all branches (concatenated in branch order), `lanes` threads share the
  /// taps (slots each) and the threads / lanes groups split the pixels of a
  /// tile, summed in a fixed order at the end.
  void tapTable(Code &c) {
    const int threads = threads_, TH = s_.weightTileH, TW = s_.weightTileW;
    const int C = static_cast<int>(spec_.channels);
    const int numBranches = static_cast<int>(spec_.branches.size());
    const int slots = wp_.slots, maxTaps = wp_.windowTaps;
    const int SW = wp_.tileCols, xSize = wp_.xElements, redSize = wp_.reductionElements;
    const bool perTapDy = wp_.perTapDy();

    c("");
    c("/* backward-weight phase 1: per (channel, split) partial sums over ", TH, "x", TW,
      " dy tiles; ", slots, " tap slot(s) per thread */");
    prologue(c);
    const int L = wp_.channelLanes;
    const std::string tapPart = lanePart(maxTaps), redPart = lanePart(redSize + maxTaps);
    c("SLAK_SHARED int toff[", L * maxTaps, "];");
    c("SLAK_SHARED int tpos[", L * maxTaps, "];");
    if (perTapDy)
      c("SLAK_SHARED int tdy[", L * maxTaps, "];");
    std::string start = "0";
    for (int b = 0; b < numBranches; ++b) {
      const Branch &br = spec_.branches[b];
      const bool all = br.dense || spec_.denseWeightGrad;
      if (all) {
        c("const int nt", b, " = ", br.windowSize(), ";");
      } else {
        c("const int tb", b, " = tapOffsets[", b * C, " + ", tapChannel(), "];");
        c("const int nt", b, " = tapOffsets[", b * C, " + ", tapChannel(), " + 1] - tb", b, ";");
      }
      c("const int ts", b, " = ", start, ";");
      start = cat("ts", b, " + nt", b);
      c.open("for (int k = tid; k < nt", b, "; k += ", threads, ")");
      if (all) {
        c("const int u = k / ", br.kernelW, ";");
        c("const int v = k - u * ", br.kernelW, ";");
      } else {
        c("const int t = taps[tb", b, " + k];");
        c("const int u = t >> 16;");
        c("const int v = t & 0xffff;");
      }
      c("toff[", tapPart, "ts", b, " + k] = ", tileOffset(br, "u"), ";");
      c("tpos[", tapPart, "ts", b, " + k] = ", wp_.windowOffsets[b], " + u * ", br.kernelW,
        " + v;");
      if (perTapDy)
        c("tdy[", tapPart, "ts", b, " + k] = ", nhwc_ ? b : xSize + b * TH * TW, ";");
      c.close();
    }
    c("const int T = ", start, ";");
    c("SLAK_BARRIER();");
    // NHWC: the threads of a warp work on different channels; splitting the
    // whole window keeps their loops in step (a per-channel split diverges).
    c("const int need = (", nhwc_ ? std::to_string(maxTaps) : std::string("T"), " + ", slots - 1,
      ") / ", slots, ";");
    c("int lanes = 1;");
    c("while (lanes < need) lanes <<= 1;");
    c("const int groups = ", threads, " / lanes;");
    c("const int lane = tid & (lanes - 1);");
    c("const int group = tid / lanes;");
    for (int j = 0; j < slots; ++j) {
      c("const int k", j, " = lane + ", j, " * lanes;");
      c("const int o", j, " = k", j, " < T ? toff[", tapPart, "k", j, "] : 0;");
      if (perTapDy)
        c("const int d", j, " = k", j, " < T ? tdy[", tapPart, "k", j, "] : ", nhwc_ ? 0 : xSize,
          ";");
      if (nhwc_) { // the tap in tile rows and columns
        c("const int or", j, " = o", j, " / ", SW, ";");
        c("const int oc", j, " = o", j, " - or", j, " * ", SW, ";");
      }
      c("float a", j, " = 0.0f;");
    }
    tileLoop(c);
    // Pixel (i, q) of the tile; xr and dr are its staged x and dy positions.
    auto pixel = [&](const std::string &xr, const std::string &dr) {
      if (!perTapDy)
        c("const float g = ", dyAt(dr, "0", "i", "q"), ";");
      for (int j = 0; j < slots; ++j)
        c("a", j, " += ", perTapDy ? dyAt(cat("d", j, " + ", dr), cat("d", j), "i", "q") : "g",
          " * ", xAt(cat("o", j, " + ", xr), cat("or", j, " + i"), cat("oc", j, " + q")), ";");
    };
    c.open("if (groups <= ", TH, ")");
    c.open("for (int i = group; i < ", TH, "; i += groups)");
    // A bounded unroll keeps the loads in flight (and the registers) moderate.
    c("#pragma unroll ", std::min(TW, 8));
    c.open("for (int q = 0; q < ", TW, "; ++q)");
    pixel(cat("i * ", SW, " + q"), cat(perTapDy ? "" : cat(xSize, " + "), "i * ", TW, " + q"));
    c.close();
    c.close();
    c.closeOpenElse();
    c("#pragma unroll 1"); // few taps: registers matter more than ILP
    c.open("for (int p = group; p < ", TH * TW, "; p += groups)");
    c("const int i = p / ", TW, ";");
    if (nhwc_)
      c("const int q = p - i * ", TW, ";");
    pixel(cat("p + i * ", SW - TW), cat(perTapDy ? "" : cat(xSize, " + "), "p"));
    c.close();
    c.close();
    c.close();
    // Fixed-order reduction over the pixel groups into the whole window of
    // the channel (dead taps 0).
    c("SLAK_BARRIER();");
    for (int j = 0; j < slots; ++j)
      c("sm[", redPart, "group * ", slots, " * lanes + k", j, "] = a", j, ";");
    c.open("for (int e = tid; e < ", maxTaps, "; e += ", threads, ")");
    c("sm[", redPart, redSize, " + e] = 0.0f;");
    c.close();
    c("SLAK_BARRIER();");
    c.open("for (int k = tid; k < T; k += ", threads, ")");
    c("float sum = 0.0f;");
    c("for (int g = 0; g < groups; ++g) sum += sm[", redPart, "g * ", slots, " * lanes + k];");
    c("sm[", redPart, redSize, " + tpos[", tapPart, "k]] = sum;");
    c.close();
    c("SLAK_BARRIER();");
    storePartials(
        c, [](int) {},
        [&](int b) { return cat("sm[", redPart, redSize + wp_.windowOffsets[b], " + e]"); });
    c.close();
  }

  void reduce(Code &c) {
    const int threads = s_.weightThreads;
    const int64_t wcount = weightCount(spec_);
    c("");
    c("/* backward-weight phase 2: dW = sum of the ", s_.weightSplit,
      " partials in a fixed order */");
    signature(c, KernelKind::BackwardWeightReduce);
    c.open("");
    c("const slak_i64 e = SLAK_BLOCK_ID * ", threads, " + SLAK_THREAD_ID;");
    c.open("if (e < ", wcount, ")");
    c("float sum = 0.0f;");
    c("for (int k = 0; k < ", s_.weightSplit, "; ++k) sum += workspace[(slak_i64)k * ", wcount,
      " + e];");
    c(st("dw", "e", "sum"));
    c.close();
    c.close();
  }

  /// NHWC: the start of lane cl's share of an array holding `size` entries
  /// per lane; empty for NCHW.
  std::string lanePart(int size) const { return nhwc_ ? cat("cl * ", size, " + ") : std::string(); }
  /// The channel whose taps the thread reads (NHWC: a real one).
  std::string tapChannel() const { return nhwc_ ? "cw" : "c"; }
  /// x at staged-tile position (tile row `r`, tile column `q`): from shared
  /// memory (NCHW, as `staged`) or global memory (NHWC).
  std::string xAt(const std::string &staged, const std::string &r, const std::string &q) const {
    if (!nhwc_)
      return cat("sm[", staged, "]");
    return ldNhwc("x", "xb", cat("i0 + (", wp_.halo.minRow, ") + ", r),
                  cat("j0 + (", wp_.halo.minCol, ") + ", q), "cw", "H", "W");
  }
  /// dy of image `d` (a dy branch, or an expression) at tile pixel (i, q).
  std::string dyAt(const std::string &staged, const std::string &d, const std::string &i,
                   const std::string &q) const {
    if (!nhwc_)
      return cat("sm[", staged, "]");
    return ldNhwc("dy", cat("(((slak_i64)", d, " * N + n) * HO * WO * ", spec_.channels, ")"),
                  cat("i0 + ", i), cat("j0 + ", q), "cw", "HO", "WO");
  }

  const WeightGradPlan &wp_;
  const bool nhwc_;
  const int threads_; // threads per channel
};

} // namespace

void emitWeightGrad(const KernelPlan &plan, Code &code) { WeightGradEmitter(plan).run(code); }

} // namespace slak::codegen
