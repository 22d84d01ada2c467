#include "codegen/ConvPassEmitter.h"

#include <algorithm>

namespace slak::codegen {
namespace {

class ConvPassEmitter : KernelText {
public:
  ConvPassEmitter(const KernelPlan &plan, KernelKind kind)
      : KernelText(plan), pass_(plan.pass(kind)), bwd_(kind == KernelKind::BackwardData),
        in_(bwd_ ? "dy" : "x"), out_(bwd_ ? "dx" : "y"), IH_(bwd_ ? "HO" : "H"),
        IW_(bwd_ ? "WO" : "W"), OH_(bwd_ ? "H" : "HO"), OW_(bwd_ ? "W" : "WO"),
        perBranchStore_(!bwd_ && spec_.perBranchOutputs) {}

  void run(Code &c) {
    if (spec_.channelsLast()) {
      runChannelsLast(c);
      return;
    }
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread();
    const int BH = s_.blockH, BW = s_.blockW, TH = s_.tileH, TW = s_.tileW;
    const int C = static_cast<int>(spec_.channels);
    const std::vector<PassBranch> &pbs = pass_.branches;
    const std::vector<InputGroup> &groups = pass_.groups;

    open(c, cat(": ", TH, "x", TW, " outputs per block, ", R, "x", CC, " per thread"));
    blockPlane(c, TH, TW);
    c("const int c = plane % ", C, ";");
    tileOrigin(c, TH, TW);
    c("const int ty = tid / ", BW, ";");
    c("const int tx = tid - ty * ", BW, ";");
    if (s_.stageInput)
      c("SLAK_SHARED float xs[", pass_.stagedInput, "];");
    if (s_.stageTaps)
      c("SLAK_SHARED float ws[", std::max(1, pass_.stagedWeights), "];");
    if (s_.stageTaps && pass_.stagedOffsets > 0)
      c("SLAK_SHARED int toff[", pass_.stagedOffsets, "];");
    for (const PassBranch &pb : pbs) {
      const int b = pb.index;
      c("const slak_i64 wrow", b, " = (slak_i64)", pb.weightBase, " + (slak_i64)c * ",
        pb.kh * pb.kw, ";");
      if (pb.table || pb.masked) {
        c("const int tb", b, " = tapOffsets[", b * C, " + c];");
        c("const int nt", b, " = tapOffsets[", b * C, " + c + 1] - tb", b, ";");
      }
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      const std::string planeExpr = groups[g].dyBranch >= 0 ? cat("((slak_i64)", groups[g].dyBranch,
                                                                  " * N * ", C, " + plane)")
                                                            : std::string("(slak_i64)plane");
      c("const slak_i64 ib", g, " = ", planeExpr, " * ", IH_, " * ", IW_, ";");
    }
    if (s_.stageTaps)
      stageTaps(c);

    const std::string bv = accumulators(c, "c");
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const InputGroup &g = groups[gi];
      if (s_.stageInput) {
        if (gi > 0)
          c("SLAK_BARRIER(); /* the previous input is no longer read */");
        c.open("for (int r = ty; r < ", g.rows, "; r += ", BH, ")");
        c("const int iy = oy0 + (", g.halo.minRow, ") + r;");
        c.open("for (int q = tx; q < ", g.cols, "; q += ", BW, ")");
        c("xs[r * ", g.stride, " + q] = ",
          ld2(in_, cat("ib", gi), "iy", cat("ox0 + (", g.halo.minCol, ") + q"), IH_, IW_), ";");
        c.close();
        c.close();
        c("SLAK_BARRIER();");
      } else if (gi == 0 && s_.stageTaps) {
        c("SLAK_BARRIER();");
      }
      for (int i : g.branches)
        accumulate(c, pbs[i], g, gi, cat("((slak_i64)", pbs[i].index, " * N * ", C, " + plane)"));
    }
    if (!perBranchStore_)
      store(c, out_, "(slak_i64)plane", OH_, OW_, bv);
    c.close();
  }

  /// The NHWC pass: channel lanes fastest, one staged branch at a time (see
  /// ConvPassPlan).
  void runChannelsLast(Code &c) {
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread();
    const int TH = s_.tileH, L = pass_.lanes, PC = pass_.pixelCols, CT = pass_.colThreads;
    const int C = static_cast<int>(spec_.channels), T = pass_.threads;
    const int channelGroups = (C + L - 1) / L;

    open(c, cat(" (nhwc): ", TH, "x", PC, " pixels x ", L, " channels per block, ", R, "x", CC,
                " per thread"));
    blockPlane(c, TH, PC);
    c("const int n = plane / ", channelGroups, ";");
    c("const int c0 = (plane - n * ", channelGroups, ") * ", L, ";");
    tileOrigin(c, TH, PC);
    c("const int lane = tid % ", L, ";");
    c("const int pt = tid / ", L, ";");
    c("const int ty = pt / ", CT, ";");
    c("const int tx = pt - ty * ", CT, ";");
    c("const int c = c0 + lane;");
    // A real channel's weights, taps, bias and (unstaged) input.
    bool readsChannel = !s_.stageTaps || !s_.stageInput || (!bwd_ && spec_.hasBias);
    for (const PassBranch &pb : pass_.branches)
      readsChannel = readsChannel || pb.table || pb.masked;
    if (readsChannel)
      c("const int cw = c < ", C, " ? c : ", C - 1, ";");
    if (s_.stageInput)
      c("SLAK_SHARED float xs[", pass_.stagedInput, "];");
    if (s_.stageTaps && pass_.stagedWeights > 0)
      c("SLAK_SHARED float ws[", pass_.stagedWeights, "];");
    for (const PassBranch &pb : pass_.branches) {
      const int b = pb.index;
      if (pb.table || pb.masked || !s_.stageTaps) // else read from the staged weights
        c("const slak_i64 wrow", b, " = (slak_i64)", pb.weightBase, " + (slak_i64)cw * ",
          pb.kh * pb.kw, ";");
      if (pb.table || pb.masked) {
        c("const int tb", b, " = tapOffsets[", b * C, " + cw];");
        c("const int nt", b, " = tapOffsets[", b * C, " + cw + 1] - tb", b, ";");
      }
    }
    const std::string bv = accumulators(c, "cw");
    for (size_t gi = 0; gi < pass_.groups.size(); ++gi) {
      const InputGroup &g = pass_.groups[gi];
      const PassBranch &pb = pass_.branches[g.branches.front()];
      const std::string image =
          g.dyBranch >= 0 ? cat("((slak_i64)", g.dyBranch, " * N + n)") : "(slak_i64)n";
      c("const slak_i64 ib", gi, " = ", image, " * ", IH_, " * ", IW_, " * ", C, ";");
      const bool stagesWeights = s_.stageTaps && !pb.table;
      if (gi > 0 && (s_.stageInput || stagesWeights))
        c("SLAK_BARRIER(); /* the previous branch's tiles are no longer read */");
      if (s_.stageInput) {
        c.open("for (int e = tid; e < ", g.rows * g.cols * L, "; e += ", T, ")");
        c("const int l = e % ", L, ";");
        c("const int rq = e / ", L, ";");
        c("const int r = rq / ", g.cols, ";");
        c("const int q = rq - r * ", g.cols, ";");
        c("xs[e] = c0 + l < ", C, " ? ",
          ldNhwc(in_, cat("ib", gi), cat("oy0 + (", g.halo.minRow, ") + r"),
                 cat("ox0 + (", g.halo.minCol, ") + q"), "c0 + l", IH_, IW_),
          " : 0.0f;");
        c.close();
      }
      if (stagesWeights)
        stageLaneWeights(c, pb);
      if (s_.stageInput || stagesWeights)
        c("SLAK_BARRIER();");
      accumulate(c, pb, g, gi, cat("((slak_i64)", pb.index, " * N + n)"));
    }
    if (!perBranchStore_)
      store(c, out_, "(slak_i64)n", OH_, OW_, bv);
    c.close();
  }

private:
  /// The comment naming the kernel and its tiling, the signature, and the
  /// sizes the body starts with.
  void open(Code &c, const std::string &tiling) {
    c("");
    c("/* ", kernelKindName(pass_.kind), tiling, " */");
    signature(c, pass_.kind);
    c.open("");
    sizes(c);
    if (spec_.perBranchOutputs)
      c("const int N = batch;");
  }

  /// The block's plane (blocks run plane by plane) and its tile in the
  /// plane's grid of tileH x tileW output tiles.
  void blockPlane(Code &c, int tileH, int tileW) {
    c("const int tilesW = (", OW_, " + ", tileW - 1, ") / ", tileW, ";");
    c("const int tilesPerPlane = ((", OH_, " + ", tileH - 1, ") / ", tileH, ") * tilesW;");
    c("const slak_i64 blockId = SLAK_BLOCK_ID;");
    c("const int plane = (int)(blockId / tilesPerPlane);");
    c("const int tile = (int)(blockId - (slak_i64)plane * tilesPerPlane);");
  }

  /// The tile's first output row and column, and the thread's index.
  void tileOrigin(Code &c, int tileH, int tileW) {
    c("const int tileRow = tile / tilesW;");
    c("const int oy0 = tileRow * ", tileH, ";");
    c("const int ox0 = (tile - tileRow * tilesW) * ", tileW, ";");
    c("const int tid = SLAK_THREAD_ID;");
  }

  /// The bias of channel `channel` where the store adds one, and the zeroed
  /// accumulators a<r>_<k>; returns what the store adds (" + bv" or "").
  std::string accumulators(Code &c, const std::string &channel) {
    const std::string bv = !bwd_ && spec_.hasBias && !spec_.perBranchOutputs ? " + bv" : "";
    if (!bv.empty())
      c("const float bv = ", ld("bias", channel), ";");
    for (int r = 0; r < s_.rowsPerThread(); ++r) {
      std::string line = "float ";
      for (int k = 0; k < s_.colsPerThread(); ++k)
        line += cat(k ? ", " : "", "a", r, "_", k, " = 0.0f");
      c(line, ";");
    }
    return bv;
  }

  /// Adds branch pb over input group gi to the accumulators; with per-branch
  /// outputs, stores them to the branch's output image `branchImage` and
  /// zeroes them for the next branch.
  void accumulate(Code &c, const PassBranch &pb, const InputGroup &g, size_t gi,
                  const std::string &branchImage) {
    if (s_.stageInput && !pb.table)
      denseRotating(c, pb, g);
    else if (s_.stageInput)
      sparseStaged(c, pb, g);
    else
      unstaged(c, pb, in_, cat("ib", gi), IH_, IW_);
    if (!perBranchStore_)
      return;
    store(c, out_, branchImage, OH_, OW_, "");
    for (int r = 0; r < s_.rowsPerThread(); ++r)
      for (int k = 0; k < s_.colsPerThread(); ++k)
        c("a", r, "_", k, " = 0.0f;");
  }

  /// NHWC: stages branch pb's weights of the block's channels as
  /// ws[position * lanes + lane] (flipped for backward-data); a masked
  /// branch gets zeros at each channel's dead taps.
  void stageLaneWeights(Code &c, const PassBranch &pb) {
    const int L = pass_.lanes, T = pass_.threads, window = pb.kh * pb.kw;
    const int C = static_cast<int>(spec_.channels), b = pb.index;
    c.open("for (int e = tid; e < ", window * L, "; e += ", T, ")");
    if (pb.masked) {
      c("ws[e] = 0.0f;");
    } else {
      c("const int ch = c0 + e % ", L, ";");
      c("const int k = e / ", L, ";");
      c("ws[e] = ch < ", C, " ? ",
        ld("wt", cat(pb.weightBase, " + (slak_i64)ch * ", window, " + ",
                     pb.flip ? cat(window - 1, " - k") : std::string("k"))),
        " : 0.0f;");
    }
    c.close();
    if (!pb.masked)
      return;
    c("SLAK_BARRIER(); /* dead taps are 0 before the live ones land */");
    c.open("if (c < ", C, ")");
    c.open("for (int k = pt; k < nt", b, "; k += ", T / L, ")");
    c("const int t = taps[tb", b, " + k];");
    c("const int e = (t >> 16) * ", pb.kw, " + (t & 0xffff);");
    c("ws[(", pb.flip ? cat(window - 1, " - e") : std::string("e"), ") * ", L,
      " + lane] = ", ld("wt", cat("wrow", b, " + e")), ";");
    c.close();
    c.close();
  }
  /// Stages the channel's taps: weights as f32 (flipped for backward-data),
  /// and the staged-tile offsets of table taps.
  void stageTaps(Code &c) {
    const int threads = pass_.threads;
    bool anyMasked = false;
    for (const PassBranch &pb : pass_.branches) {
      if (!pb.masked)
        continue;
      anyMasked = true;
      c.open("for (int e = tid; e < ", pb.kh * pb.kw, "; e += ", threads, ")");
      c("ws[", pb.wsOffset, " + e] = 0.0f;");
      c.close();
    }
    if (anyMasked)
      c("SLAK_BARRIER(); /* dead taps are 0 before the live ones land */");
    for (const PassBranch &pb : pass_.branches) {
      const int b = pb.index, window = pb.kh * pb.kw;
      const InputGroup &g = pass_.groups[pass_.groupOf(b)];
      if (pb.masked) {
        c.open("for (int k = tid; k < nt", b, "; k += ", threads, ")");
        c("const int t = taps[tb", b, " + k];");
        c("const int e = (t >> 16) * ", pb.kw, " + (t & 0xffff);");
        c("ws[", pb.wsOffset, " + ", pb.flip ? cat(window - 1, " - e") : std::string("e"),
          "] = ", ld("wt", cat("wrow", b, " + e")), ";");
        c.close();
      } else if (!pb.table) {
        c.open("for (int e = tid; e < ", window, "; e += ", threads, ")");
        c("ws[", pb.wsOffset,
          " + e] = ", ld("wt", cat("wrow", b, pb.flip ? cat(" + ", window - 1, " - e") : " + e")),
          ";");
        c.close();
      } else {
        c.open("for (int k = tid; k < nt", b, "; k += ", threads, ")");
        c("const int t = taps[tb", b, " + k];");
        c("const int u = t >> 16;");
        c("const int v = t & 0xffff;");
        c("ws[", pb.wsOffset, " + k] = ", ld("wt", cat("wrow", b, " + u * ", pb.kw, " + v")), ";");
        const std::string uu = pb.flip ? cat("(", pb.kh - 1, " - u)") : "u";
        const std::string vv = pb.flip ? cat("(", pb.kw - 1, " - v)") : "v";
        if (s_.stageInput)
          c("toff[", pb.toffOffset, " + k] = (", uu, " + ", pb.rowBase, ") * ", g.stride, " + ", vv,
            " + ", pb.colBase, ";");
        else
          c("toff[", pb.toffOffset, " + k] = (", uu, " << 16) | ", vv, ";");
        c.close();
      }
    }
  }

  bool nhwc() const { return spec_.channelsLast(); }
  /// Staged elements between adjacent pixels of a row: 1, or the lanes.
  int pixelUnit() const { return nhwc() ? pass_.lanes : 1; }
  /// Pixels between the columns of a thread's register block.
  int columnStep() const { return nhwc() ? pass_.colThreads : s_.blockW; }
  /// The thread's channel lane in the staged tiles.
  std::string laneTerm() const { return nhwc() ? " + lane" : ""; }

  std::string weightAt(const PassBranch &pb, const std::string &u, const std::string &v) const {
    if (s_.stageTaps && nhwc())
      return cat("ws[((", u, ") * ", pb.kw, " + ", v, ") * ", pass_.lanes, " + lane]");
    if (s_.stageTaps)
      return cat("ws[", pb.wsOffset, " + (", u, ") * ", pb.kw, " + ", v, "]");
    const std::string idx = cat("(", u, ") * ", pb.kw, " + ", v);
    return ld("wt", cat("wrow", pb.index, " + ",
                        pb.flip ? cat("(", pb.kh * pb.kw - 1, " - (", idx, "))") : idx));
  }

  /// Dense branch over a staged input: for each window column v, walk the
  /// window rows u keeping the R input rows that the thread's R outputs need
  /// in a rotating set of registers, so each shared-memory load feeds R FMAs
  /// per column.
  void denseRotating(Code &c, const PassBranch &pb, const InputGroup &g) {
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread();
    const int U = pixelUnit(), BW = columnStep() * U;
    const int full = pb.kh / R, tail = pb.kh % R;
    c.open("/* branch ", pb.index, ": ", pb.masked ? "masked " : "dense ", pb.kh, "x", pb.kw,
           " */");
    if (nhwc())
      c("const int xb = (ty * ", R, " + ", pb.rowBase, ") * ", g.stride, " + (tx + ", pb.colBase,
        ") * ", U, " + lane;");
    else
      c("const int xb = (ty * ", R, " + ", pb.rowBase, ") * ", g.stride, " + tx + ", pb.colBase,
        ";");
    for (int r = 0; r < R; ++r) {
      std::string line = "float ";
      for (int k = 0; k < CC; ++k)
        line += cat(k ? ", " : "", "x", r, "_", k);
      c(line, ";");
    }
    // One window column per iteration: unrolling columns too lets the
    // compiler hoist loads across them until registers spill.
    c("#pragma unroll 1");
    c.open("for (int v = 0; v < ", pb.kw, "; ++v)");
    c("const int xc = xb + v", U > 1 ? cat(" * ", U) : std::string(), ";");
    for (int r = 0; r + 1 < R; ++r)
      for (int k = 0; k < CC; ++k)
        c("x", r, "_", k, " = xs[xc + ", r * g.stride + k * BW, "];");
    auto step = [&](int p, const std::string &u) {
      const int slot = (p + R - 1) % R;
      for (int k = 0; k < CC; ++k)
        c("x", slot, "_", k, " = xs[xc + (", u, " + ", p + R - 1, ") * ", g.stride, " + ", k * BW,
          "];");
      c.open("");
      c("const float wv = ", weightAt(pb, cat(u, " + ", p), "v"), ";");
      // NCHW: uniform, every thread of the block reads the same weight (NHWC
      // lanes read different channels' weights).
      const bool skipDead = pb.masked && !nhwc();
      if (skipDead)
        c.open("if (wv != 0.0f)");
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < CC; ++k)
          c("a", r, "_", k, " += wv * x", (p + r) % R, "_", k, ";");
      if (skipDead)
        c.close();
      c.close();
    };
    if (full > 1) {
      c.open("for (int u = 0; u < ", full * R, "; u += ", R, ")");
      for (int p = 0; p < R; ++p)
        step(p, "u");
      c.close();
    } else if (full == 1) {
      for (int p = 0; p < R; ++p)
        step(p, "0");
    }
    for (int p = 0; p < tail; ++p)
      step(p, std::to_string(full * R));
    c.close();
    c.close();
  }

  /// Table branch over a staged input: one weight and one offset per live tap,
  /// then R x CC FMAs from shared memory.
  void sparseStaged(Code &c, const PassBranch &pb, const InputGroup &g) {
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread();
    const int U = pixelUnit(), BW = columnStep() * U;
    c.open("/* branch ", pb.index, ": ", pb.kh, "x", pb.kw, " tap table */");
    c("const int xb = ty * ", R * g.stride, " + tx", U > 1 ? cat(" * ", U) : std::string(),
      laneTerm(), ";");
    c.open("for (int k = 0; k < nt", pb.index, "; ++k)");
    if (s_.stageTaps && !nhwc()) {
      c("const float wv = ws[", pb.wsOffset, " + k];");
      c("const int o = xb + toff[", pb.toffOffset, " + k];");
    } else {
      c("const int t = taps[tb", pb.index, " + k];");
      c("const int u = t >> 16;");
      c("const int v = t & 0xffff;");
      c("const float wv = ", ld("wt", cat("wrow", pb.index, " + u * ", pb.kw, " + v")), ";");
      const std::string uu = pb.flip ? cat("(", pb.kh - 1, " - u)") : "u";
      const std::string vv = pb.flip ? cat("(", pb.kw - 1, " - v)") : "v";
      c("const int o = xb + (", uu, " + ", pb.rowBase, ") * ", g.stride, " + ",
        U > 1 ? cat("(", vv, " + ", pb.colBase, ") * ", U) : cat(vv, " + ", pb.colBase), ";");
    }
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < CC; ++k)
        c("a", r, "_", k, " += wv * xs[o + ", r * g.stride + k * BW, "];");
    c.close();
    c.close();
  }

  /// Without a staged input every tap reads global memory with bounds checks.
  void unstaged(Code &c, const PassBranch &pb, const std::string &in, const std::string &ib,
                const std::string &IH, const std::string &IW) {
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread(), BW = columnStep();
    c.open("/* branch ", pb.index, ": ", pb.kh, "x", pb.kw, pb.table ? " tap table" : " dense",
           ", unstaged input */");
    c("const int iy0 = oy0 + ty * ", R, " - ", pb.ph, ";");
    c("const int ix0 = ox0 + tx - ", pb.pw, ";");
    if (!pb.table) {
      c.open("for (int u = 0; u < ", pb.kh, "; ++u)");
      c.open("for (int v = 0; v < ", pb.kw, "; ++v)");
      c("const float wv = ", weightAt(pb, "u", "v"), ";");
    } else {
      c.open("for (int k = 0; k < nt", pb.index, "; ++k)");
      if (s_.stageTaps && !nhwc()) {
        c("const float wv = ws[", pb.wsOffset, " + k];");
        c("const int u = toff[", pb.toffOffset, " + k] >> 16;");
        c("const int v = toff[", pb.toffOffset, " + k] & 0xffff;");
      } else {
        c("const int t = taps[tb", pb.index, " + k];");
        c("const float wv = ",
          ld("wt", cat("wrow", pb.index, " + (t >> 16) * ", pb.kw, " + (t & 0xffff)")), ";");
        c("const int u = ", pb.flip ? cat(pb.kh - 1, " - (t >> 16)") : "t >> 16", ";");
        c("const int v = ", pb.flip ? cat(pb.kw - 1, " - (t & 0xffff)") : "t & 0xffff", ";");
      }
    }
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < CC; ++k)
        c("a", r, "_", k, " += wv * ",
          nhwc() ? ldNhwc(in, ib, cat("iy0 + u + ", r), cat("ix0 + v + ", k * BW), "cw", IH, IW)
                 : ld2(in, ib, cat("iy0 + u + ", r), cat("ix0 + v + ", k * BW), IH, IW),
          ";");
    c.close();
    if (!pb.table)
      c.close();
    c.close();
  }

  void store(Code &c, const std::string &outName, const std::string &planeExpr,
             const std::string &OH, const std::string &OW, const std::string &bv) {
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread(), BW = columnStep();
    if (nhwc()) {
      const int C = static_cast<int>(spec_.channels);
      c.open("if (c < ", C, ")");
      c("const slak_i64 ob = ", planeExpr, " * ", OH, " * ", OW, " * ", C, " + c;");
      for (int r = 0; r < R; ++r) {
        c.open("if (oy0 + ty * ", R, " + ", r, " < ", OH, ")");
        c("const slak_i64 orow = ob + (slak_i64)(oy0 + ty * ", R, " + ", r, ") * ", OW, " * ", C,
          ";");
        for (int k = 0; k < CC; ++k)
          c("if (ox0 + tx + ", k * BW, " < ", OW, ") ",
            st(outName, cat("orow + (slak_i64)(ox0 + tx + ", k * BW, ") * ", C),
               cat("a", r, "_", k, bv)));
        c.close();
      }
      c.close();
      return;
    }
    c.open("");
    c("const slak_i64 ob = ", planeExpr, " * ", OH, " * ", OW, ";");
    for (int r = 0; r < R; ++r) {
      c.open("if (oy0 + ty * ", R, " + ", r, " < ", OH, ")");
      c("const slak_i64 orow = ob + (slak_i64)(oy0 + ty * ", R, " + ", r, ") * ", OW, ";");
      for (int k = 0; k < CC; ++k)
        c("if (ox0 + tx + ", k * BW, " < ", OW, ") ",
          st(outName, cat("orow + ox0 + tx + ", k * BW), cat("a", r, "_", k, bv)));
      c.close();
    }
    c.close();
  }

  const ConvPassPlan &pass_;
  const bool bwd_; // backward-data: reads dy, writes dx
  // The input and output tensors and their sizes' names.
  const std::string in_, out_, IH_, IW_, OH_, OW_;
  const bool perBranchStore_;
};

} // namespace

void emitConvPass(const KernelPlan &plan, KernelKind kind, Code &code) {
  ConvPassEmitter(plan, kind).run(code);
}

} // namespace slak::codegen
