// HalidePipelines: the CPU backend's Halide pipelines in one include: the
// conv pipeline (forward, backward-data), backward-weight and the bias
// gradient, with the host JIT (target, compile count) and the thread pool
// size they share. Each is JIT-compiled for the host and cached in memory;
// sizes, channel counts, kernels and tap lists are run-time inputs, so one
// compiled pipeline serves every layer with the same group structure and the
// same code-shaping schedule fields.
#pragma once

#include "codegen/halide/BiasGradPipeline.h"
#include "codegen/halide/ConvPipeline.h"
#include "codegen/halide/HalideThreads.h"
#include "codegen/halide/HostJit.h"
#include "codegen/halide/WeightGradPipeline.h"
