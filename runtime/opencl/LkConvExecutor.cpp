#include "runtime/opencl/LkConvExecutor.h"

#include <stdexcept>
#include <string>

#include "codegen/BufferLayout.h"
#include "codegen/ElementCodec.h"

namespace slak::runtime::opencl {

using codegen::ElementType;
using codegen::KernelKind;

namespace {

void checkCount(const char *fn, const char *what, size_t actual, int64_t expected) {
  if (static_cast<int64_t>(actual) != expected)
    throw std::invalid_argument(std::string("LkConvExecutor::") + fn + ": " + what + " has " +
                                std::to_string(actual) + " elements, expected " +
                                std::to_string(expected));
}

std::unique_ptr<Buffer> upload(const std::shared_ptr<Context> &context,
                               const std::vector<float> &values, ElementType type) {
  const std::vector<uint8_t> bytes = codegen::encodeElements(values, type);
  return std::make_unique<Buffer>(context, bytes.size(), bytes.data());
}

std::unique_ptr<Buffer> uploadInts(const std::shared_ptr<Context> &context,
                                   const std::vector<int32_t> &values) {
  return std::make_unique<Buffer>(context, values.size() * sizeof(int32_t), values.data());
}

std::vector<float> download(const Buffer &buffer, int64_t count, ElementType type) {
  std::vector<uint8_t> bytes(count * codegen::elementTypeBytes(type));
  buffer.read(bytes.data(), bytes.size());
  return codegen::decodeElements(bytes.data(), count, type);
}

} // namespace

std::shared_ptr<Program> buildProgram(std::shared_ptr<Context> context,
                                      const std::vector<codegen::EmittedKernels> &layers) {
  return std::make_shared<Program>(std::move(context),
                                   codegen::assembleSource(codegen::Backend::OpenCL, layers));
}

LkConvExecutor::LkConvExecutor(std::shared_ptr<Program> program, codegen::EmittedKernels kernels)
    : program_(std::move(program)), kernels_(std::move(kernels)) {}

void LkConvExecutor::checkTable(const codegen::TapTable &table) const {
  const int64_t expected = static_cast<int64_t>(spec().branches.size()) * spec().channels + 1;
  if (static_cast<int64_t>(table.offsets.size()) != expected)
    throw std::invalid_argument("LkConvExecutor: tap table has " +
                                std::to_string(table.offsets.size()) + " offsets, expected " +
                                std::to_string(expected) + " (branches * channels + 1)");
}

void LkConvExecutor::launch(KernelKind kind, int64_t n, int64_t h, int64_t w,
                            const std::vector<cl_mem> &buffers) {
  const size_t expected = kind == KernelKind::Forward                ? 6
                          : kind == KernelKind::BackwardWeightReduce ? 2
                                                                     : 5;
  if (buffers.size() != expected)
    throw std::invalid_argument("LkConvExecutor::launch: " + kernels_.name(kind) + " takes " +
                                std::to_string(expected) + " buffers, got " +
                                std::to_string(buffers.size()));
  const bool withSizes = kind != KernelKind::BackwardWeightReduce;
  const codegen::LaunchGeometry g = kernels_.geometry(kind, n, h, w);
  cl_kernel kernel = program_->kernel(kernels_.name(kind));
  cl_uint index = 0;
  for (cl_mem mem : buffers)
    check(clSetKernelArg(kernel, index++, sizeof(cl_mem), &mem), "clSetKernelArg(buffer)");
  if (withSizes) {
    const cl_int sizes[3] = {static_cast<cl_int>(n), static_cast<cl_int>(h),
                             static_cast<cl_int>(w)};
    for (cl_int size : sizes)
      check(clSetKernelArg(kernel, index++, sizeof(cl_int), &size), "clSetKernelArg(size)");
  }
  const size_t global = static_cast<size_t>(g.blocks) * g.threads;
  const size_t local = static_cast<size_t>(g.threads);
  cl_command_queue queue = program_->context()->queue();
  check(clEnqueueNDRangeKernel(queue, kernel, 1, nullptr, &global, &local, 0, nullptr, nullptr),
        ("clEnqueueNDRangeKernel(" + kernels_.name(kind) + ")").c_str());
  check(clFinish(queue), "clFinish");
}

std::vector<float> LkConvExecutor::forward(int64_t n, int64_t h, int64_t w,
                                           const std::vector<float> &x,
                                           const std::vector<float> &weights,
                                           const codegen::TapTable &table,
                                           const std::vector<float> &bias) {
  const codegen::KernelSpec &s = spec();
  checkCount("forward", "x", x.size(), codegen::inputCount(s, n, h, w));
  checkCount("forward", "weights", weights.size(), codegen::weightCount(s));
  checkCount("forward", "bias", bias.size(), s.hasBias ? s.channels : 0);
  checkTable(table);
  const auto &ctx = program_->context();
  auto xb = upload(ctx, x, s.elementType);
  auto wb = upload(ctx, weights, s.elementType);
  auto ob = uploadInts(ctx, table.offsets);
  auto tb = uploadInts(ctx, table.taps);
  auto bb = upload(ctx, bias, s.elementType);
  const int64_t count = codegen::outputCount(s, n, h, w);
  Buffer yb(ctx, count * codegen::elementTypeBytes(s.elementType));
  launch(KernelKind::Forward, n, h, w,
         {xb->mem(), wb->mem(), ob->mem(), tb->mem(), bb->mem(), yb.mem()});
  return download(yb, count, s.elementType);
}

std::vector<float> LkConvExecutor::backwardData(int64_t n, int64_t h, int64_t w,
                                                const std::vector<float> &dy,
                                                const std::vector<float> &weights,
                                                const codegen::TapTable &table) {
  const codegen::KernelSpec &s = spec();
  checkCount("backwardData", "dy", dy.size(), codegen::outputCount(s, n, h, w));
  checkCount("backwardData", "weights", weights.size(), codegen::weightCount(s));
  checkTable(table);
  const auto &ctx = program_->context();
  auto dyb = upload(ctx, dy, s.elementType);
  auto wb = upload(ctx, weights, s.elementType);
  auto ob = uploadInts(ctx, table.offsets);
  auto tb = uploadInts(ctx, table.taps);
  const int64_t count = codegen::inputCount(s, n, h, w);
  Buffer dxb(ctx, count * codegen::elementTypeBytes(s.elementType));
  launch(KernelKind::BackwardData, n, h, w,
         {dyb->mem(), wb->mem(), ob->mem(), tb->mem(), dxb.mem()});
  return download(dxb, count, s.elementType);
}

std::vector<float> LkConvExecutor::backwardWeight(int64_t n, int64_t h, int64_t w,
                                                  const std::vector<float> &x,
                                                  const std::vector<float> &dy,
                                                  const codegen::TapTable &table) {
  const codegen::KernelSpec &s = spec();
  checkCount("backwardWeight", "x", x.size(), codegen::inputCount(s, n, h, w));
  checkCount("backwardWeight", "dy", dy.size(), codegen::outputCount(s, n, h, w));
  checkTable(table);
  const auto &ctx = program_->context();
  auto xb = upload(ctx, x, s.elementType);
  auto dyb = upload(ctx, dy, s.elementType);
  auto ob = uploadInts(ctx, table.offsets);
  auto tb = uploadInts(ctx, table.taps);
  Buffer workspace(ctx, codegen::weightWorkspaceCount(s) * sizeof(float));
  const int64_t count = codegen::weightCount(s);
  Buffer dwb(ctx, count * codegen::elementTypeBytes(s.elementType));
  launch(KernelKind::BackwardWeight, n, h, w,
         {xb->mem(), dyb->mem(), ob->mem(), tb->mem(), workspace.mem()});
  launch(KernelKind::BackwardWeightReduce, n, h, w, {workspace.mem(), dwb.mem()});
  return download(dwb, count, s.elementType);
}

} // namespace slak::runtime::opencl
