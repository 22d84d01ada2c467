#include "runtime/opencl/LkConvExecutor.h"

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

#include "codegen/BufferLayout.h"
#include "codegen/ElementCodec.h"

namespace slak::runtime::opencl {

using codegen::ElementType;
using codegen::KernelBuffer;
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

codegen::KernelBuffers<cl_mem>
buffersOf(std::initializer_list<std::pair<KernelBuffer, cl_mem>> entries) {
  codegen::KernelBuffers<cl_mem> buffers{};
  for (const auto &[which, mem] : entries)
    buffers[static_cast<int>(which)] = mem;
  return buffers;
}

std::vector<float> download(const Buffer &buffer, int64_t count, ElementType type) {
  std::vector<uint8_t> bytes(count * codegen::elementTypeBytes(type));
  buffer.read(bytes.data(), bytes.size());
  return codegen::decodeElements(bytes.data(), count, type);
}

} // namespace

void runKernel(cl_kernel kernel, cl_command_queue queue, const codegen::KernelLaunch &launch,
               const codegen::KernelBuffers<cl_mem> &buffers) {
  cl_uint index = 0;
  for (const codegen::BoundArgument &a : launch.arguments) {
    const codegen::KernelParameter &p = a.parameter;
    if (!p.isBuffer()) {
      const cl_int value = a.value;
      check(clSetKernelArg(kernel, index++, sizeof(cl_int), &value), "clSetKernelArg(size)");
      continue;
    }
    const cl_mem mem = buffers[static_cast<int>(p.buffer)];
    size_t held = 0;
    if (mem)
      check(clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof held, &held, nullptr),
            "clGetMemObjectInfo(CL_MEM_SIZE)");
    if (!mem || static_cast<int64_t>(held) < a.bytes)
      throw std::invalid_argument("runKernel: " + launch.name + " needs a " +
                                  codegen::kernelBufferName(p.buffer) + " buffer of at least " +
                                  std::to_string(a.bytes) + " bytes, " +
                                  (mem ? "got " + std::to_string(held) : std::string("got none")));
    check(clSetKernelArg(kernel, index++, sizeof(cl_mem), &mem), "clSetKernelArg(buffer)");
  }
  const size_t global = static_cast<size_t>(launch.geometry.blocks) * launch.geometry.threads;
  const size_t local = static_cast<size_t>(launch.geometry.threads);
  check(clEnqueueNDRangeKernel(queue, kernel, 1, nullptr, &global, &local, 0, nullptr, nullptr),
        ("clEnqueueNDRangeKernel(" + launch.name + ")").c_str());
  check(clFinish(queue), "clFinish");
}

std::shared_ptr<Program> buildProgram(std::shared_ptr<Context> context,
                                      const std::vector<codegen::EmittedKernels> &layers) {
  return std::make_shared<Program>(std::move(context),
                                   codegen::assembleSource(codegen::GpuLanguage::OpenCL, layers));
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

void LkConvExecutor::run(KernelKind kind, int64_t n, int64_t h, int64_t w,
                         const codegen::KernelBuffers<cl_mem> &buffers) {
  for (const codegen::KernelLaunch &launch : codegen::bindPass(kernels_, kind, n, h, w))
    runKernel(program_->kernel(launch.name), program_->context()->queue(), launch, buffers);
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
  run(KernelKind::Forward, n, h, w,
      buffersOf({{KernelBuffer::X, xb->mem()},
                 {KernelBuffer::Weights, wb->mem()},
                 {KernelBuffer::TapOffsets, ob->mem()},
                 {KernelBuffer::Taps, tb->mem()},
                 {KernelBuffer::Bias, bb->mem()},
                 {KernelBuffer::Y, yb.mem()}}));
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
  run(KernelKind::BackwardData, n, h, w,
      buffersOf({{KernelBuffer::Dy, dyb->mem()},
                 {KernelBuffer::Weights, wb->mem()},
                 {KernelBuffer::TapOffsets, ob->mem()},
                 {KernelBuffer::Taps, tb->mem()},
                 {KernelBuffer::Dx, dxb.mem()}}));
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
  run(KernelKind::BackwardWeight, n, h, w,
      buffersOf({{KernelBuffer::X, xb->mem()},
                 {KernelBuffer::Dy, dyb->mem()},
                 {KernelBuffer::TapOffsets, ob->mem()},
                 {KernelBuffer::Taps, tb->mem()},
                 {KernelBuffer::Workspace, workspace.mem()},
                 {KernelBuffer::Dw, dwb.mem()}}));
  return download(dwb, count, s.elementType);
}

} // namespace slak::runtime::opencl
