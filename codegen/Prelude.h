// Prelude: the only backend-specific text of a generated kernel file. The
// emitted kernel bodies are written against a handful of macros and inline
// helpers (kernel qualifier, address spaces, thread/block ids, barrier,
// loads/stores per element type); the prelude defines them as CUDA C++ or as
// OpenCL C 1.2, so the same body compiles for both.
//
// Element types in memory: f32 is `float`; f16 is IEEE half (CUDA: bit
// pattern in `unsigned short`, converted with cvt; OpenCL: `half` pointers
// read with vload_half, no cl_khr_fp16 needed); bf16 is the upper half of a
// float as `unsigned short` on both. Arithmetic is always f32.
#pragma once

#include <string>

#include "codegen/KernelSpec.h"

namespace slak::codegen {

enum class GpuLanguage { Cuda, OpenCL };

/// The GPU source language the emitter writes: the same kernel text goes
/// through a CUDA or an OpenCL prelude.
const char *languageName(GpuLanguage language); // "cuda", "opencl"

/// The macro and helper prelude for `language`. It has an include guard, is
/// self-contained (no #include, so NVRTC needs no headers) and defines, for
/// every element type T in {f32, f16, bf16}:
///   slak_T_t                      pointer element type
///   slak_ld_T(p, i) -> float      load p[i]
///   slak_st_T(p, i, v)            store v to p[i] (round to nearest even)
///   slak_ld2_T(p, base, y, x, h, w) -> float   p[base + y*w + x], 0 outside
std::string emitPrelude(GpuLanguage language);

/// Name of the element type as the body spells it: "f32", "f16", "bf16".
const char *preludeTypeSuffix(ElementType type);

} // namespace slak::codegen
