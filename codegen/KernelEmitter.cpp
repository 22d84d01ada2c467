#include "codegen/KernelEmitter.h"

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include "codegen/BufferLayout.h"

namespace slak::codegen {
namespace {

template <typename... Args> std::string cat(const Args &...args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

/// Indented text builder for the kernel body.
class Code {
public:
  template <typename... Args> void operator()(const Args &...args) {
    text_.append(2 * indent_, ' ');
    text_ += cat(args...);
    text_ += '\n';
  }
  template <typename... Args> void open(const Args &...args) {
    if (sizeof...(args) == 1 && cat(args...).empty())
      (*this)("{");
    else
      (*this)(args..., " {");
    ++indent_;
  }
  void close() {
    --indent_;
    (*this)("}");
  }
  void closeOpenElse() {
    --indent_;
    (*this)("} else {");
    ++indent_;
  }
  const std::string &str() const { return text_; }

private:
  std::string text_;
  int indent_ = 0;
};

/// A branch as one pass (forward or backward-data) sees it: backward-data is
/// a forward correlation over dy with the window flipped and padding
/// kernel - 1 - pad.
struct PassBranch {
  int index = 0;
  int kh = 1, kw = 1;
  int ph = 0, pw = 0; // padding of this pass
  bool flip = false;
  bool table = false;  // walks the tap table
  bool masked = false; // sparse, but walks the window over zero-filled weights
  int64_t weightBase = 0;
  int wsOffset = 0;             // into ws[] (stageTaps)
  int toffOffset = 0;           // into toff[] (stageTaps and table)
  int rowBase = 0, colBase = 0; // staged row/col of tap (0, 0) for output (0, 0)
};

/// Branches that read the same staged input (x, or one dy).
struct InputGroup {
  std::vector<int> branches; // indices into the pass branches
  int dyBranch = -1;         // per-branch dy: which one; -1 = the only input
  int minR = 0, maxR = 0, minC = 0, maxC = 0;
  int sh = 0, cols = 0; // staged tile size
  int sw = 0;           // row stride in shared memory (cols, padded)
};

class Emitter {
public:
  explicit Emitter(const KernelSpec &spec) : spec_(spec), s_(spec.schedule) {
    base_ = kernelBaseName(spec);
    t_ = preludeTypeSuffix(spec.elementType);
    dh_ = 2 * spec.branches[0].padH - spec.branches[0].kernelH + 1;
    dw_ = 2 * spec.branches[0].padW - spec.branches[0].kernelW + 1;
  }

  EmittedKernels run() {
    EmittedKernels out;
    out.spec = spec_;
    Code code;
    code("/* ", spec_.signature(), " */");
    convPass(code, KernelKind::Forward, out);
    convPass(code, KernelKind::BackwardData, out);
    weightPartial(code, out);
    weightReduce(code, out);
    out.body = code.str();
    return out;
  }

private:
  std::string ld(const std::string &ptr, const std::string &index) const {
    return cat("slak_ld_", t_, "(", ptr, ", ", index, ")");
  }
  std::string ld2(const std::string &ptr, const std::string &base, const std::string &y,
                  const std::string &x, const std::string &h, const std::string &w) const {
    return cat("slak_ld2_", t_, "(", ptr, ", ", base, ", ", y, ", ", x, ", ", h, ", ", w, ")");
  }
  std::string ptr(bool isConst) const {
    return cat("SLAK_GLOBAL ", isConst ? "const " : "", "slak_", t_, "_t *SLAK_RESTRICT");
  }
  static std::string kernelName(const std::string &base, KernelKind kind) {
    switch (kind) {
    case KernelKind::Forward:
      return base + "_fwd";
    case KernelKind::BackwardData:
      return base + "_bwd_data";
    case KernelKind::BackwardWeight:
      return base + "_bwd_weight";
    case KernelKind::BackwardWeightReduce:
      return base + "_bwd_weight_reduce";
    }
    return base;
  }

  void sizes(Code &o) const {
    o("const int H = ", spec_.height > 0 ? std::to_string(spec_.height) : "height", ";");
    o("const int W = ", spec_.width > 0 ? std::to_string(spec_.width) : "width", ";");
    o("const int HO = H + (", dh_, ");");
    o("const int WO = W + (", dw_, ");");
  }

  /// Blocks per SM promised to ptxas: a budget of 128 registers per thread
  /// (registers are allocated per warp of 32). Given the thread count alone,
  /// ptxas sizes registers for the occupancy the shared memory allows, and
  /// spills.
  static int minBlocks(int threads) {
    const int lanes = (threads + 31) / 32 * 32;
    return std::max(1, 65536 / (lanes * 128));
  }

  static void checkShared(const char *kernel, int64_t bytes, const std::string &what,
                          const std::string &fix) {
    if (bytes > kMaxSharedBytes)
      throw std::invalid_argument(cat("emitKernels: the ", kernel, " kernel needs ", bytes,
                                      " bytes of shared memory (", what, "), more than ",
                                      kMaxSharedBytes, "; ", fix));
  }

  // ---- forward and backward-data ------------------------------------------------------------

  void convPass(Code &o, KernelKind kind, EmittedKernels &out) {
    const bool bwd = kind == KernelKind::BackwardData;
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread();
    const int BH = s_.blockH, BW = s_.blockW, TH = s_.tileH, TW = s_.tileW;
    const int threads = s_.threadsPerBlock();
    const int C = static_cast<int>(spec_.channels);
    const int numBranches = static_cast<int>(spec_.branches.size());

    std::vector<PassBranch> pbs;
    int wsSize = 0, toffSize = 0;
    for (int b = 0; b < numBranches; ++b) {
      const Branch &br = spec_.branches[b];
      PassBranch pb;
      pb.index = b;
      pb.kh = br.kernelH;
      pb.kw = br.kernelW;
      pb.ph = bwd ? br.kernelH - 1 - br.padH : br.padH;
      pb.pw = bwd ? br.kernelW - 1 - br.padW : br.padW;
      pb.flip = bwd;
      pb.table = !br.dense;
      pb.masked = pb.table && s_.maskedWalk && s_.stageInput && s_.stageTaps;
      if (pb.masked)
        pb.table = false;
      pb.weightBase = weightOffset(spec_, b);
      pb.wsOffset = wsSize;
      pb.toffOffset = toffSize;
      wsSize += br.windowSize();
      if (pb.table)
        toffSize += br.windowSize();
      pbs.push_back(pb);
    }
    // Forward reads x once for all branches; backward-data with per-branch
    // outputs reads one dy per branch.
    std::vector<InputGroup> groups;
    if (bwd && spec_.perBranchOutputs) {
      for (int b = 0; b < numBranches; ++b) {
        InputGroup g;
        g.branches = {b};
        g.dyBranch = b;
        groups.push_back(g);
      }
    } else {
      InputGroup g;
      for (int b = 0; b < numBranches; ++b)
        g.branches.push_back(b);
      groups.push_back(g);
    }
    int stageSize = 1;
    for (InputGroup &g : groups) {
      g.minR = g.minC = 1 << 30;
      g.maxR = g.maxC = -(1 << 30);
      for (int i : g.branches) {
        const PassBranch &pb = pbs[i];
        g.minR = std::min(g.minR, -pb.ph);
        g.maxR = std::max(g.maxR, pb.kh - 1 - pb.ph);
        g.minC = std::min(g.minC, -pb.pw);
        g.maxC = std::max(g.maxC, pb.kw - 1 - pb.pw);
      }
      g.sh = TH + g.maxR - g.minR;
      g.cols = TW + g.maxC - g.minC;
      g.sw = conflictFreeStride(g.cols);
      for (int i : g.branches) {
        pbs[i].rowBase = -pbs[i].ph - g.minR;
        pbs[i].colBase = -pbs[i].pw - g.minC;
      }
      stageSize = std::max(stageSize, g.sh * g.sw);
    }
    int64_t shared = 0;
    if (s_.stageInput)
      shared += 4LL * stageSize;
    if (s_.stageTaps)
      shared += 4LL * (wsSize + toffSize);
    checkShared(
        kernelKindName(kind), shared,
        cat(s_.stageInput ? cat("input tile ", groups[0].sh, "x", groups[0].cols, " + ") : "",
            s_.stageTaps ? cat(wsSize, " staged weights and ", toffSize, " tap offsets")
                         : "no staged taps"),
        "lower schedule tileH/tileW, or set stageInput/stageTaps to false");

    const std::string name = kernelName(base_, kind);
    out.names[static_cast<int>(kind)] = name;
    out.threads[static_cast<int>(kind)] = threads;
    out.sharedBytes[static_cast<int>(kind)] = shared;

    const std::string in = bwd ? "dy" : "x";
    const std::string outName = bwd ? "dx" : "y";
    const std::string IH = bwd ? "HO" : "H", IW = bwd ? "WO" : "W";
    const std::string OH = bwd ? "H" : "HO", OW = bwd ? "W" : "WO";
    const bool perBranchStore = !bwd && spec_.perBranchOutputs;
    const bool usesN = spec_.perBranchOutputs;

    o("");
    o("/* ", kernelKindName(kind), ": ", TH, "x", TW, " outputs per block, ", R, "x", CC,
      " per thread */");
    o("SLAK_KERNEL(", threads, ", ", minBlocks(threads), ")");
    o(name, "(", ptr(true), " ", in, ", ", ptr(true), " wt,");
    o("    SLAK_GLOBAL const int *SLAK_RESTRICT tapOffsets, "
      "SLAK_GLOBAL const int *SLAK_RESTRICT taps,");
    if (!bwd)
      o("    ", ptr(true), " bias, ", ptr(false), " ", outName,
        ", int batch, int height, int width)");
    else
      o("    ", ptr(false), " ", outName, ", int batch, int height, int width)");
    Code &c = o;
    c.open("");
    sizes(c);
    if (usesN)
      c("const int N = batch;");
    c("const int tilesW = (", OW, " + ", TW - 1, ") / ", TW, ";");
    c("const int tilesPerPlane = ((", OH, " + ", TH - 1, ") / ", TH, ") * tilesW;");
    c("const slak_i64 blockId = SLAK_BLOCK_ID;");
    c("const int plane = (int)(blockId / tilesPerPlane);");
    c("const int tile = (int)(blockId - (slak_i64)plane * tilesPerPlane);");
    c("const int c = plane % ", C, ";");
    c("const int tileRow = tile / tilesW;");
    c("const int oy0 = tileRow * ", TH, ";");
    c("const int ox0 = (tile - tileRow * tilesW) * ", TW, ";");
    c("const int tid = SLAK_THREAD_ID;");
    c("const int ty = tid / ", BW, ";");
    c("const int tx = tid - ty * ", BW, ";");
    if (s_.stageInput)
      c("SLAK_SHARED float xs[", stageSize, "];");
    if (s_.stageTaps)
      c("SLAK_SHARED float ws[", std::max(1, wsSize), "];");
    if (s_.stageTaps && toffSize > 0)
      c("SLAK_SHARED int toff[", toffSize, "];");
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
      c("const slak_i64 ib", g, " = ", planeExpr, " * ", IH, " * ", IW, ";");
    }

    // Stage the channel's taps (weights as f32, flipped for backward-data,
    // and staged-tile offsets of table taps).
    if (s_.stageTaps) {
      bool anyMasked = false;
      for (const PassBranch &pb : pbs) {
        if (!pb.masked)
          continue;
        anyMasked = true;
        c.open("for (int e = tid; e < ", pb.kh * pb.kw, "; e += ", threads, ")");
        c("ws[", pb.wsOffset, " + e] = 0.0f;");
        c.close();
      }
      if (anyMasked)
        c("SLAK_BARRIER(); /* dead taps are 0 before the live ones land */");
      for (const PassBranch &pb : pbs) {
        const int b = pb.index, window = pb.kh * pb.kw;
        const InputGroup &g = groups[groupOf(groups, b)];
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
          c("ws[", pb.wsOffset, " + k] = ", ld("wt", cat("wrow", b, " + u * ", pb.kw, " + v")),
            ";");
          const std::string uu = pb.flip ? cat("(", pb.kh - 1, " - u)") : "u";
          const std::string vv = pb.flip ? cat("(", pb.kw - 1, " - v)") : "v";
          if (s_.stageInput)
            c("toff[", pb.toffOffset, " + k] = (", uu, " + ", pb.rowBase, ") * ", g.sw, " + ", vv,
              " + ", pb.colBase, ";");
          else
            c("toff[", pb.toffOffset, " + k] = (", uu, " << 16) | ", vv, ";");
          c.close();
        }
      }
    }

    // Accumulators.
    const std::string bv = !bwd && spec_.hasBias && !spec_.perBranchOutputs ? " + bv" : "";
    if (!bv.empty())
      c("const float bv = ", ld("bias", "c"), ";");
    for (int r = 0; r < R; ++r) {
      std::string line = "float ";
      for (int k = 0; k < CC; ++k)
        line += cat(k ? ", " : "", "a", r, "_", k, " = 0.0f");
      c(line, ";");
    }

    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const InputGroup &g = groups[gi];
      if (s_.stageInput) {
        if (gi > 0)
          c("SLAK_BARRIER(); /* the previous input is no longer read */");
        c.open("for (int r = ty; r < ", g.sh, "; r += ", BH, ")");
        c("const int iy = oy0 + (", g.minR, ") + r;");
        c.open("for (int q = tx; q < ", g.cols, "; q += ", BW, ")");
        c("xs[r * ", g.sw,
          " + q] = ", ld2(in, cat("ib", gi), "iy", cat("ox0 + (", g.minC, ") + q"), IH, IW), ";");
        c.close();
        c.close();
        c("SLAK_BARRIER();");
      } else if (gi == 0 && s_.stageTaps) {
        c("SLAK_BARRIER();");
      }
      for (int i : g.branches) {
        const PassBranch &pb = pbs[i];
        if (s_.stageInput && !pb.table)
          denseRotating(c, pb, g);
        else if (s_.stageInput)
          sparseStaged(c, pb, g);
        else
          unstaged(c, pb, in, cat("ib", gi), IH, IW);
        if (perBranchStore) {
          store(c, outName, cat("((slak_i64)", pb.index, " * N * ", C, " + plane)"), OH, OW, "");
          for (int r = 0; r < R; ++r)
            for (int k = 0; k < CC; ++k)
              c("a", r, "_", k, " = 0.0f;");
        }
      }
    }
    if (!perBranchStore)
      store(c, outName, "(slak_i64)plane", OH, OW, bv);
    c.close();
  }

  /// Smallest row stride >= cols for which the R-row thread blocks of one
  /// warp (blockW < 32 puts several thread rows in a warp) read distinct
  /// shared-memory banks.
  int conflictFreeStride(int cols) const {
    const int R = s_.rowsPerThread(), BW = s_.blockW;
    const int warp = std::min(32, s_.threadsPerBlock());
    int best = cols, bestDegree = 1 << 30;
    for (int stride = cols; stride < cols + 32; ++stride) {
      int perBank[32] = {0};
      int degree = 0;
      for (int lane = 0; lane < warp; ++lane) {
        const int bank = ((lane / BW) * R * stride + lane % BW) % 32;
        degree = std::max(degree, ++perBank[bank]);
      }
      if (degree < bestDegree) {
        bestDegree = degree;
        best = stride;
      }
      if (degree == 1 || BW >= 32)
        break;
    }
    return best;
  }

  static int groupOf(const std::vector<InputGroup> &groups, int branch) {
    for (size_t g = 0; g < groups.size(); ++g)
      for (int b : groups[g].branches)
        if (b == branch)
          return static_cast<int>(g);
    return 0;
  }

  std::string weightAt(const PassBranch &pb, const std::string &u, const std::string &v) const {
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
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread(), BW = s_.blockW;
    const int full = pb.kh / R, tail = pb.kh % R;
    c.open("/* branch ", pb.index, ": ", pb.masked ? "masked " : "dense ", pb.kh, "x", pb.kw,
           " */");
    c("const int xb = (ty * ", R, " + ", pb.rowBase, ") * ", g.sw, " + tx + ", pb.colBase, ";");
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
    c("const int xc = xb + v;");
    for (int r = 0; r + 1 < R; ++r)
      for (int k = 0; k < CC; ++k)
        c("x", r, "_", k, " = xs[xc + ", r * g.sw + k * BW, "];");
    auto step = [&](int p, const std::string &u) {
      const int slot = (p + R - 1) % R;
      for (int k = 0; k < CC; ++k)
        c("x", slot, "_", k, " = xs[xc + (", u, " + ", p + R - 1, ") * ", g.sw, " + ", k * BW,
          "];");
      c.open("");
      c("const float wv = ", weightAt(pb, cat(u, " + ", p), "v"), ";");
      if (pb.masked) // uniform: every thread of the block reads the same weight
        c.open("if (wv != 0.0f)");
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < CC; ++k)
          c("a", r, "_", k, " += wv * x", (p + r) % R, "_", k, ";");
      if (pb.masked)
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
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread(), BW = s_.blockW;
    c.open("/* branch ", pb.index, ": ", pb.kh, "x", pb.kw, " tap table */");
    c("const int xb = ty * ", R * g.sw, " + tx;");
    c.open("for (int k = 0; k < nt", pb.index, "; ++k)");
    if (s_.stageTaps) {
      c("const float wv = ws[", pb.wsOffset, " + k];");
      c("const int o = xb + toff[", pb.toffOffset, " + k];");
    } else {
      c("const int t = taps[tb", pb.index, " + k];");
      c("const int u = t >> 16;");
      c("const int v = t & 0xffff;");
      c("const float wv = ", ld("wt", cat("wrow", pb.index, " + u * ", pb.kw, " + v")), ";");
      const std::string uu = pb.flip ? cat("(", pb.kh - 1, " - u)") : "u";
      const std::string vv = pb.flip ? cat("(", pb.kw - 1, " - v)") : "v";
      c("const int o = xb + (", uu, " + ", pb.rowBase, ") * ", g.sw, " + ", vv, " + ", pb.colBase,
        ";");
    }
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < CC; ++k)
        c("a", r, "_", k, " += wv * xs[o + ", r * g.sw + k * BW, "];");
    c.close();
    c.close();
  }

  /// Without a staged input every tap reads global memory with bounds checks.
  void unstaged(Code &c, const PassBranch &pb, const std::string &in, const std::string &ib,
                const std::string &IH, const std::string &IW) {
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread(), BW = s_.blockW;
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
      if (s_.stageTaps) {
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
          ld2(in, ib, cat("iy0 + u + ", r), cat("ix0 + v + ", k * BW), IH, IW), ";");
    c.close();
    if (!pb.table)
      c.close();
    c.close();
  }

  void store(Code &c, const std::string &outName, const std::string &planeExpr,
             const std::string &OH, const std::string &OW, const std::string &bv) {
    const int R = s_.rowsPerThread(), CC = s_.colsPerThread(), BW = s_.blockW;
    c.open("");
    c("const slak_i64 ob = ", planeExpr, " * ", OH, " * ", OW, ";");
    for (int r = 0; r < R; ++r) {
      c.open("if (oy0 + ty * ", R, " + ", r, " < ", OH, ")");
      c("const slak_i64 orow = ob + (slak_i64)(oy0 + ty * ", R, " + ", r, ") * ", OW, ";");
      for (int k = 0; k < CC; ++k)
        c("if (ox0 + tx + ", k * BW, " < ", OW, ") slak_st_", t_, "(", outName,
          ", orow + ox0 + tx + ", k * BW, ", a", r, "_", k, bv, ");");
      c.close();
    }
    c.close();
  }

  // ---- backward-weight ----------------------------------------------------------------------

  /// Signature and the (channel, split) / tile-range prologue shared by both
  /// phase-1 variants; leaves the body open.
  void weightPrologue(Code &c, const std::string &name, int smSize) {
    const int threads = s_.weightThreads, TH = s_.weightTileH, TW = s_.weightTileW;
    const int C = static_cast<int>(spec_.channels);
    c("SLAK_KERNEL(", threads, ", ", minBlocks(threads), ")");
    c(name, "(", ptr(true), " x, ", ptr(true), " dy,");
    c("    SLAK_GLOBAL const int *SLAK_RESTRICT tapOffsets, "
      "SLAK_GLOBAL const int *SLAK_RESTRICT taps,");
    c("    SLAK_GLOBAL float *SLAK_RESTRICT workspace, int batch, int height, int width)");
    c.open("");
    sizes(c);
    c("const int N = batch;");
    c("const int tid = SLAK_THREAD_ID;");
    c("const int blockId = (int)SLAK_BLOCK_ID;");
    c("const int c = blockId % ", C, ";");
    c("const int split = blockId / ", C, ";");
    c("const int tilesW = (WO + ", TW - 1, ") / ", TW, ";");
    c("const int tilesPerImage = ((HO + ", TH - 1, ") / ", TH, ") * tilesW;");
    c("const slak_i64 tilesTotal = (slak_i64)N * tilesPerImage;");
    c("const slak_i64 tBegin = tilesTotal * split / ", s_.weightSplit, ";");
    c("const slak_i64 tEnd = tilesTotal * (split + 1) / ", s_.weightSplit, ";");
    c("SLAK_SHARED float sm[", smSize, "];");
  }

  /// Opens the loop over this split's dy tiles and stages the x tile (SH x SW
  /// from row/col offset minR/minC) at sm[0] and the dy tile(s) after it.
  void weightTileLoop(Code &c, int SH, int SW, int minR, int minC, int numDy) {
    const int threads = s_.weightThreads, TH = s_.weightTileH, TW = s_.weightTileW;
    const int C = static_cast<int>(spec_.channels);
    const int xSize = SH * SW;
    c.open("for (slak_i64 t = tBegin; t < tEnd; ++t)");
    c("const int n = (int)(t / tilesPerImage);");
    c("const int tr = (int)(t - (slak_i64)n * tilesPerImage);");
    c("const int tileRow = tr / tilesW;");
    c("const int i0 = tileRow * ", TH, ";");
    c("const int j0 = (tr - tileRow * tilesW) * ", TW, ";");
    c("SLAK_BARRIER(); /* the previous tile is no longer read */");
    c("const slak_i64 xb = ((slak_i64)n * ", C, " + c) * H * W;");
    c.open("for (int e = tid; e < ", xSize, "; e += ", threads, ")");
    c("const int r = e / ", SW, ";");
    c("sm[e] = ",
      ld2("x", "xb", cat("i0 + (", minR, ") + r"), cat("j0 + (", minC, ") + e - r * ", SW), "H",
          "W"),
      ";");
    c.close();
    for (int d = 0; d < numDy; ++d) {
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

  /// Phase 1 for layers whose every branch computes its whole window (dense,
  /// denseWeightGrad or maskedWalk): threads own blocks of P = weightRowsPerThread
  /// vertically adjacent taps and walk each dy column with a rotating register
  /// window of x rows, so each loaded x value feeds P taps. Dead taps of
  /// sparse branches are zeroed at the end unless denseWeightGrad.
  void weightPartialBlocked(Code &c, EmittedKernels &out) {
    const int threads = s_.weightThreads, TH = s_.weightTileH, TW = s_.weightTileW;
    const int P = s_.weightRowsPerThread;
    const int C = static_cast<int>(spec_.channels);
    const int numBranches = static_cast<int>(spec_.branches.size());
    int minR = 1 << 30, maxR = -(1 << 30), minC = 1 << 30, maxC = -(1 << 30), maxTaps = 0;
    int numBlocks = 0;
    bool needLive = false;
    for (const Branch &b : spec_.branches) {
      minR = std::min(minR, -b.padH);
      maxR = std::max(maxR, b.kernelH - 1 - b.padH);
      minC = std::min(minC, -b.padW);
      maxC = std::max(maxC, b.kernelW - 1 - b.padW);
      maxTaps += b.windowSize();
      numBlocks += (b.kernelH + P - 1) / P * b.kernelW;
      needLive = needLive || (!b.dense && !spec_.denseWeightGrad);
    }
    // P - 1 extra rows: the padding rows of a window's last tap block read
    // there (their sums are dropped).
    const int SH = TH + maxR - minR + P - 1, SW = TW + maxC - minC;
    int lanes = 1;
    while (lanes < numBlocks && lanes < threads)
      lanes *= 2;
    const int slots = (numBlocks + lanes - 1) / lanes;
    const int groups = threads / lanes;
    const int numDy = spec_.perBranchOutputs ? numBranches : 1;
    const bool perTapDy = numDy > 1;
    const int xSize = SH * SW, dySize = numDy * TH * TW;
    const int redSize = groups * maxTaps;
    const int smSize = std::max(xSize + dySize, redSize);
    const int64_t shared =
        4LL * smSize + 4LL * numBlocks * (perTapDy ? 5 : 4) + (needLive ? 4LL * maxTaps : 0);
    checkShared("backward-weight", shared,
                cat("x tile ", SH, "x", SW, ", ", numDy, " dy tile(s) ", TH, "x", TW, ", ",
                    numBlocks, " tap blocks and a ", groups, "x", maxTaps, " reduction"),
                "lower schedule weightTileH/weightTileW");
    const int64_t wcount = weightCount(spec_);
    const std::string name = kernelName(base_, KernelKind::BackwardWeight);
    const int kind = static_cast<int>(KernelKind::BackwardWeight);
    out.names[kind] = name;
    out.threads[kind] = threads;
    out.sharedBytes[kind] = shared;

    c("");
    c("/* backward-weight phase 1: per (channel, split) partial sums over ", TH, "x", TW,
      " dy tiles; ", numBlocks, " blocks of ", P, " taps, ", slots, " per thread, ", groups,
      " pixel group(s) */");
    weightPrologue(c, name, smSize);
    c("SLAK_SHARED int boff[", numBlocks, "];");  // x offset of the block's first tap
    c("SLAK_SHARED int bpos[", numBlocks, "];");  // window position of the first tap
    c("SLAK_SHARED int brows[", numBlocks, "];"); // taps in the block (<= P)
    c("SLAK_SHARED int bkw[", numBlocks, "];");   // window row stride
    if (perTapDy)
      c("SLAK_SHARED int bdy[", numBlocks, "];");
    if (needLive)
      c("SLAK_SHARED int live[", maxTaps, "];");
    int start = 0, windowOffset = 0;
    std::vector<int> windowOffsets;
    c.open("for (int k = tid; k < ", numBlocks, "; k += ", threads, ")");
    for (int b = 0; b < numBranches; ++b) {
      const Branch &br = spec_.branches[b];
      const int count = (br.kernelH + P - 1) / P * br.kernelW;
      c.open(b ? "else " : "", "if (k < ", start + count, ")");
      c("const int rb = (k - ", start, ") / ", br.kernelW, ";");
      c("const int v = (k - ", start, ") - rb * ", br.kernelW, ";");
      c("const int u0 = rb * ", P, ";");
      c("boff[k] = (u0 + ", -br.padH - minR, ") * ", SW, " + v + ", -br.padW - minC, ";");
      c("bpos[k] = ", windowOffset, " + u0 * ", br.kernelW, " + v;");
      c("brows[k] = ", br.kernelH, " - u0 < ", P, " ? ", br.kernelH, " - u0 : ", P, ";");
      c("bkw[k] = ", br.kernelW, ";");
      if (perTapDy)
        c("bdy[k] = ", xSize + b * TH * TW, ";");
      c.close();
      windowOffsets.push_back(windowOffset);
      start += count;
      windowOffset += br.windowSize();
    }
    c.close();
    if (needLive) {
      for (int b = 0; b < numBranches; ++b) {
        const Branch &br = spec_.branches[b];
        c.open("for (int e = tid; e < ", br.windowSize(), "; e += ", threads, ")");
        c("live[", windowOffsets[b], " + e] = ", !br.dense && !spec_.denseWeightGrad ? 0 : 1, ";");
        c.close();
      }
      c("SLAK_BARRIER(); /* all taps dead before the live ones are marked */");
      for (int b = 0; b < numBranches; ++b) {
        const Branch &br = spec_.branches[b];
        if (br.dense || spec_.denseWeightGrad)
          continue;
        c.open("");
        c("const int tb = tapOffsets[", b * C, " + c];");
        c("const int nt = tapOffsets[", b * C, " + c + 1] - tb;");
        c.open("for (int k = tid; k < nt; k += ", threads, ")");
        c("const int t = taps[tb + k];");
        c("live[", windowOffsets[b], " + (t >> 16) * ", br.kernelW, " + (t & 0xffff)] = 1;");
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
        c("const int d", j, " = ok", j, " ? bdy[k", j, "] : ", xSize, ";");
      std::string acc = "float ";
      for (int q = 0; q < P; ++q)
        acc += cat(q ? ", " : "", "a", j, "_", q, " = 0.0f");
      c(acc, ";");
    }
    weightTileLoop(c, SH, SW, minR, minC, numDy);
    c.open("for (int q = group; q < ", TW, "; q += ", groups, ")");
    for (int j = 0; j < slots; ++j) {
      std::string regs = "float ";
      for (int q = 0; q < P; ++q)
        regs += cat(q ? ", " : "", "x", j, "_", q);
      c(regs, ";");
      for (int r = 0; r + 1 < P; ++r)
        c("x", j, "_", r, " = sm[o", j, " + q + ", r * SW, "];");
    }
    for (int i = 0; i < TH; ++i) {
      c.open("");
      const std::string dyAt = cat(i * TW, " + q");
      if (!perTapDy)
        c("const float g = sm[", xSize, " + ", dyAt, "];");
      for (int j = 0; j < slots; ++j) {
        c("x", j, "_", (i + P - 1) % P, " = sm[o", j, " + q + ", (i + P - 1) * SW, "];");
        if (perTapDy)
          c("const float g", j, " = sm[d", j, " + ", dyAt, "];");
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
      c("const int base = group * ", maxTaps, " + bpos[k", j, "];");
      c("const int rows = brows[k", j, "];");
      c("const int kw = bkw[k", j, "];");
      for (int q = 0; q < P; ++q)
        c("if (", q, " < rows) sm[base + ", q, " * kw] = a", j, "_", q, ";");
      c.close();
    }
    c("SLAK_BARRIER();");
    for (int b = 0; b < numBranches; ++b) {
      const Branch &br = spec_.branches[b];
      c.open("for (int e = tid; e < ", br.windowSize(), "; e += ", threads, ")");
      c("float sum = 0.0f;");
      c("for (int g = 0; g < ", groups, "; ++g) sum += sm[g * ", maxTaps, " + ", windowOffsets[b],
        " + e];");
      c("workspace[(slak_i64)split * ", wcount, " + ", weightOffset(spec_, b), " + (slak_i64)c * ",
        br.windowSize(), " + e] = ",
        needLive ? cat("live[", windowOffsets[b], " + e] ? sum : 0.0f") : std::string("sum"), ";");
      c.close();
    }
    c.close();
  }

  void weightPartial(Code &c, EmittedKernels &out) {
    bool blocked = true;
    for (const Branch &b : spec_.branches)
      blocked = blocked && (b.dense || spec_.denseWeightGrad || s_.maskedWalk);
    if (blocked)
      return weightPartialBlocked(c, out);
    const int threads = s_.weightThreads, TH = s_.weightTileH, TW = s_.weightTileW;
    const int C = static_cast<int>(spec_.channels);
    const int numBranches = static_cast<int>(spec_.branches.size());
    int minR = 1 << 30, maxR = -(1 << 30), minC = 1 << 30, maxC = -(1 << 30), maxTaps = 0;
    for (const Branch &b : spec_.branches) {
      minR = std::min(minR, -b.padH);
      maxR = std::max(maxR, b.kernelH - 1 - b.padH);
      minC = std::min(minC, -b.padW);
      maxC = std::max(maxC, b.kernelW - 1 - b.padW);
      maxTaps += b.windowSize();
    }
    const int SH = TH + maxR - minR, SW = TW + maxC - minC;
    const int slots = (maxTaps + threads - 1) / threads;
    const int numDy = spec_.perBranchOutputs ? numBranches : 1;
    const bool perTapDy = numDy > 1;
    const int xSize = SH * SW, dySize = numDy * TH * TW;
    const int redSize = threads * slots;
    const int smSize = std::max(xSize + dySize, redSize + maxTaps);
    const int64_t shared = 4LL * smSize + 4LL * maxTaps * (perTapDy ? 3 : 2);
    checkShared("backward-weight", shared,
                cat("x tile ", SH, "x", SW, ", ", numDy, " dy tile(s) ", TH, "x", TW, " and ",
                    maxTaps, " taps"),
                "lower schedule weightTileH/weightTileW");
    const int64_t wcount = weightCount(spec_);
    const std::string name = kernelName(base_, KernelKind::BackwardWeight);
    const int kind = static_cast<int>(KernelKind::BackwardWeight);
    out.names[kind] = name;
    out.threads[kind] = threads;
    out.sharedBytes[kind] = shared;

    c("");
    c("/* backward-weight phase 1: per (channel, split) partial sums over ", TH, "x", TW,
      " dy tiles; ", slots, " tap slot(s) per thread */");
    weightPrologue(c, name, smSize);
    c("SLAK_SHARED int toff[", maxTaps, "];");
    c("SLAK_SHARED int tpos[", maxTaps, "];");
    if (perTapDy)
      c("SLAK_SHARED int tdy[", maxTaps, "];");
    // The channel's taps of all branches, concatenated in branch order.
    int windowOffset = 0;
    std::string start = "0";
    for (int b = 0; b < numBranches; ++b) {
      const Branch &br = spec_.branches[b];
      const bool all = br.dense || spec_.denseWeightGrad;
      if (all) {
        c("const int nt", b, " = ", br.windowSize(), ";");
      } else {
        c("const int tb", b, " = tapOffsets[", b * C, " + c];");
        c("const int nt", b, " = tapOffsets[", b * C, " + c + 1] - tb", b, ";");
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
      c("toff[ts", b, " + k] = (u + ", -br.padH - minR, ") * ", SW, " + v + ", -br.padW - minC,
        ";");
      c("tpos[ts", b, " + k] = ", windowOffset, " + u * ", br.kernelW, " + v;");
      if (perTapDy)
        c("tdy[ts", b, " + k] = ", xSize + b * TH * TW, ";");
      c.close();
      windowOffset += br.windowSize();
    }
    c("const int T = ", start, ";");
    c("SLAK_BARRIER();");
    // `lanes` threads share the taps (slots each); the threadsPerBlock / lanes
    // groups split the pixels of a tile and are summed in a fixed order below.
    c("const int need = (T + ", slots - 1, ") / ", slots, ";");
    c("int lanes = 1;");
    c("while (lanes < need) lanes <<= 1;");
    c("const int groups = ", threads, " / lanes;");
    c("const int lane = tid & (lanes - 1);");
    c("const int group = tid / lanes;");
    for (int j = 0; j < slots; ++j) {
      c("const int k", j, " = lane + ", j, " * lanes;");
      c("const int o", j, " = k", j, " < T ? toff[k", j, "] : 0;");
      if (perTapDy)
        c("const int d", j, " = k", j, " < T ? tdy[k", j, "] : ", xSize, ";");
      c("float a", j, " = 0.0f;");
    }
    weightTileLoop(c, SH, SW, minR, minC, numDy);
    auto pixel = [&](const std::string &xr, const std::string &dr) {
      if (!perTapDy)
        c("const float g = sm[", dr, "];");
      for (int j = 0; j < slots; ++j)
        c("a", j, " += ", perTapDy ? cat("sm[d", j, " + ", dr, "]") : std::string("g"), " * sm[o",
          j, " + ", xr, "];");
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
    pixel(cat("p + i * ", SW - TW), cat(perTapDy ? "" : cat(xSize, " + "), "p"));
    c.close();
    c.close();
    c.close();
    // Fixed-order reduction over the pixel groups, then the whole window of
    // the channel (dead taps 0) to this split's partial sums.
    c("SLAK_BARRIER();");
    for (int j = 0; j < slots; ++j)
      c("sm[group * ", slots, " * lanes + k", j, "] = a", j, ";");
    c.open("for (int e = tid; e < ", maxTaps, "; e += ", threads, ")");
    c("sm[", redSize, " + e] = 0.0f;");
    c.close();
    c("SLAK_BARRIER();");
    c.open("for (int k = tid; k < T; k += ", threads, ")");
    c("float sum = 0.0f;");
    c("for (int g = 0; g < groups; ++g) sum += sm[g * ", slots, " * lanes + k];");
    c("sm[", redSize, " + tpos[k]] = sum;");
    c.close();
    c("SLAK_BARRIER();");
    windowOffset = 0;
    for (int b = 0; b < numBranches; ++b) {
      const Branch &br = spec_.branches[b];
      c.open("for (int e = tid; e < ", br.windowSize(), "; e += ", threads, ")");
      c("workspace[(slak_i64)split * ", wcount, " + ", weightOffset(spec_, b), " + (slak_i64)c * ",
        br.windowSize(), " + e] = sm[", redSize + windowOffset, " + e];");
      c.close();
      windowOffset += br.windowSize();
    }
    c.close();
  }

  void weightReduce(Code &c, EmittedKernels &out) {
    const int threads = s_.weightThreads;
    const int64_t wcount = weightCount(spec_);
    const int kind = static_cast<int>(KernelKind::BackwardWeightReduce);
    out.names[kind] = kernelName(base_, KernelKind::BackwardWeightReduce);
    out.threads[kind] = threads;
    out.sharedBytes[kind] = 0;
    c("");
    c("/* backward-weight phase 2: dW = sum of the ", s_.weightSplit,
      " partials in a fixed order */");
    c("SLAK_KERNEL(", threads, ", ", minBlocks(threads), ")");
    c(out.names[kind], "(SLAK_GLOBAL const float *SLAK_RESTRICT workspace, ", ptr(false), " dw)");
    c.open("");
    c("const slak_i64 e = SLAK_BLOCK_ID * ", threads, " + SLAK_THREAD_ID;");
    c.open("if (e < ", wcount, ")");
    c("float sum = 0.0f;");
    c("for (int k = 0; k < ", s_.weightSplit, "; ++k) sum += workspace[(slak_i64)k * ", wcount,
      " + e];");
    c("slak_st_", t_, "(dw, e, sum);");
    c.close();
    c.close();
  }

  const KernelSpec &spec_;
  const Schedule &s_;
  std::string base_;
  std::string t_;
  int dh_ = 0, dw_ = 0;
};

} // namespace

const char *kernelKindName(KernelKind kind) {
  switch (kind) {
  case KernelKind::Forward:
    return "forward";
  case KernelKind::BackwardData:
    return "backward-data";
  case KernelKind::BackwardWeight:
    return "backward-weight";
  case KernelKind::BackwardWeightReduce:
    return "backward-weight-reduce";
  }
  return "?";
}

std::string kernelBaseName(const KernelSpec &spec) {
  uint64_t hash = 1469598103934665603ULL; // FNV-1a 64
  for (unsigned char ch : spec.signature()) {
    hash ^= ch;
    hash *= 1099511628211ULL;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return std::string("slak_lk_") + hex;
}

EmittedKernels emitKernels(const KernelSpec &spec) {
  if (std::string err = spec.validate(); !err.empty())
    throw std::invalid_argument("emitKernels: invalid spec: " + err);
  return Emitter(spec).run();
}

LaunchGeometry EmittedKernels::geometry(KernelKind kind, int64_t n, int64_t h, int64_t w) const {
  auto fail = [](const std::string &what) {
    throw std::invalid_argument("EmittedKernels::geometry: " + what);
  };
  if (n <= 0)
    fail("batch is " + std::to_string(n) + ", expected a positive count");
  if (h <= 0 || w <= 0)
    fail("input is " + std::to_string(h) + "x" + std::to_string(w) + ", expected positive sizes");
  if (spec.height > 0 && h != spec.height)
    fail("input height is " + std::to_string(h) + " but the spec is static with height " +
         std::to_string(spec.height));
  if (spec.width > 0 && w != spec.width)
    fail("input width is " + std::to_string(w) + " but the spec is static with width " +
         std::to_string(spec.width));
  const int64_t ho = spec.outHeight(h), wo = spec.outWidth(w);
  if (ho <= 0 || wo <= 0)
    fail("input " + std::to_string(h) + "x" + std::to_string(w) + " gives an empty output");
  const Schedule &s = spec.schedule;
  LaunchGeometry g;
  const int k = static_cast<int>(kind);
  g.threads = threads[k];
  g.sharedBytes = sharedBytes[k];
  auto ceilDiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  // The kernels read their block index as an int (and CUDA's grid is at
  // most 2^31 - 1 blocks wide); the product must not overflow either.
  constexpr int64_t kMaxBlocks = std::numeric_limits<int32_t>::max();
  auto blocks = [&](std::initializer_list<int64_t> factors) {
    int64_t product = 1;
    for (int64_t f : factors)
      if (__builtin_mul_overflow(product, f, &product) || product > kMaxBlocks)
        fail(cat("the ", kernelKindName(kind), " kernel needs more than ", kMaxBlocks,
                 " blocks for a batch of ", n, " ", h, "x", w, " images with ", spec.channels,
                 " channels (schedule ", s.str(), "); split the batch or use larger tiles"));
    return product;
  };
  switch (kind) {
  case KernelKind::Forward:
    g.blocks = blocks({n, spec.channels, ceilDiv(ho, s.tileH), ceilDiv(wo, s.tileW)});
    break;
  case KernelKind::BackwardData:
    g.blocks = blocks({n, spec.channels, ceilDiv(h, s.tileH), ceilDiv(w, s.tileW)});
    break;
  case KernelKind::BackwardWeight:
    g.blocks = blocks({spec.channels, s.weightSplit});
    break;
  case KernelKind::BackwardWeightReduce:
    g.blocks = blocks({ceilDiv(weightCount(spec), s.weightThreads)});
    break;
  }
  return g;
}

std::string assembleSource(Backend backend, const std::vector<EmittedKernels> &layers) {
  std::string source = emitPrelude(backend);
  std::set<std::string> seen;
  for (const EmittedKernels &layer : layers)
    if (seen.insert(layer.names[0]).second)
      source += "\n" + layer.body;
  return source;
}

} // namespace slak::codegen
