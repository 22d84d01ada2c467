#include "codegen/Prelude.h"

namespace slak::codegen {
namespace {

// Shared by both backends once SLAK_U2F/SLAK_F2U and the qualifiers exist.
const char *kCommonHelpers = R"(typedef float slak_f32_t;
typedef unsigned short slak_bf16_t;

SLAK_INLINE float slak_ld_f32(SLAK_GLOBAL const float *p, slak_i64 i) { return p[i]; }
SLAK_INLINE void slak_st_f32(SLAK_GLOBAL float *p, slak_i64 i, float v) { p[i] = v; }

SLAK_INLINE float slak_ld_bf16(SLAK_GLOBAL const unsigned short *p, slak_i64 i) {
  return SLAK_U2F(((unsigned int)p[i]) << 16);
}
SLAK_INLINE void slak_st_bf16(SLAK_GLOBAL unsigned short *p, slak_i64 i, float v) {
  unsigned int u = SLAK_F2U(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    p[i] = (unsigned short)((u >> 16) | 0x40u); /* quiet NaN */
    return;
  }
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  p[i] = (unsigned short)(u >> 16);
}

#define SLAK_DEFINE_LD2(T)                                                                 \
  SLAK_INLINE float slak_ld2_##T(SLAK_GLOBAL const slak_##T##_t *p, slak_i64 base, int y, \
                                 int x, int h, int w) {                                    \
    return (y >= 0 && y < h && x >= 0 && x < w) ? slak_ld_##T(p, base + (slak_i64)y * w + x) \
                                                : 0.0f;                                    \
  }
SLAK_DEFINE_LD2(f32)
SLAK_DEFINE_LD2(f16)
SLAK_DEFINE_LD2(bf16)
#endif /* SLAK_PRELUDE */
)";

const char *kCudaPrelude = R"(/* slak prelude: CUDA C++ (no headers needed; NVRTC or nvcc) */
#ifndef SLAK_PRELUDE
#define SLAK_PRELUDE
#define SLAK_KERNEL(threads, minBlocks) \
  extern "C" __global__ void __launch_bounds__(threads, minBlocks)
#define SLAK_GLOBAL
#define SLAK_SHARED __shared__
#define SLAK_RESTRICT __restrict__
#define SLAK_INLINE __device__ __forceinline__
#define SLAK_THREAD_ID ((int)threadIdx.x)
#define SLAK_BLOCK_ID ((slak_i64)blockIdx.x)
#define SLAK_BARRIER() __syncthreads()
#define SLAK_U2F(u) __uint_as_float(u)
#define SLAK_F2U(f) __float_as_uint(f)
typedef long long slak_i64;
typedef unsigned short slak_f16_t;

SLAK_INLINE float slak_ld_f16(const unsigned short *p, slak_i64 i) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p[i]));
  return f;
}
SLAK_INLINE void slak_st_f16(unsigned short *p, slak_i64 i, float v) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  p[i] = h;
}
)";

const char *kOpenCLPrelude =
    R"(/* slak prelude: OpenCL C 1.2 (half only through vload_half/vstore_half) */
#ifndef SLAK_PRELUDE
#define SLAK_PRELUDE
#define SLAK_KERNEL(threads, minBlocks) \
  __kernel __attribute__((reqd_work_group_size(threads, 1, 1))) void
#define SLAK_GLOBAL __global
#define SLAK_SHARED __local
#define SLAK_RESTRICT restrict
#define SLAK_INLINE static inline
#define SLAK_THREAD_ID ((int)get_local_id(0))
#define SLAK_BLOCK_ID ((slak_i64)get_group_id(0))
#define SLAK_BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
#define SLAK_U2F(u) as_float(u)
#define SLAK_F2U(f) as_uint(f)
typedef long slak_i64;
#define slak_f16_t half

SLAK_INLINE float slak_ld_f16(__global const half *p, slak_i64 i) { return vload_half(i, p); }
SLAK_INLINE void slak_st_f16(__global half *p, slak_i64 i, float v) { vstore_half_rte(v, i, p); }
)";

} // namespace

const char *languageName(GpuLanguage language) {
  return language == GpuLanguage::Cuda ? "cuda" : "opencl";
}

std::string emitPrelude(GpuLanguage language) {
  return std::string(language == GpuLanguage::Cuda ? kCudaPrelude : kOpenCLPrelude) +
         kCommonHelpers;
}

const char *preludeTypeSuffix(ElementType type) { return elementTypeName(type); }

} // namespace slak::codegen
