// BiasGradPipeline: dbias[c] = sum over n, i, j of dy[n, c, i, j] (one dy),
// a Halide pipeline compiled once per process.
#pragma once

#include <Halide.h>

#include <memory>

namespace slak::codegen::cpu {

class BiasGradPipeline {
public:
  static std::shared_ptr<BiasGradPipeline> get();
  BiasGradPipeline();
  ~BiasGradPipeline();
  void run(Halide::Buffer<float> &dy, Halide::Buffer<float> &dbias);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace slak::codegen::cpu
