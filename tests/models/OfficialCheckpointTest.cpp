// Official SLaK checkpoints (models/deploy/OfficialCheckpoint.h): the name
// mapping on both large-kernel backends, the flags a file fits, the refusal
// messages, corrupt / truncated / legacy files, and a round trip through a
// torch.save-format file written by torch::pickle_save (a dict with "model",
// as the official code saves); damaged, wrong-kind and other-backend files of
// both checkpoint kinds. The end-to-end test against a model written
// in PyTorch, through slak-infer, is tests/python/test_official_checkpoint.py.
#include "models/deploy/OfficialCheckpoint.h"
#include "models/deploy/Checkpoint.h"
#include "tests/models/TestSupport.h"

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace slak;
using models::Classifier;
using models::LkBackend;
using models::ModelConfig;
using models::ModelOverrides;

namespace {

namespace fs = std::filesystem;

fs::path tempDir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("slak-official-test-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

/// Removes tempDir() when the tests end.
class TempDirCleanup : public ::testing::Environment {
public:
  void TearDown() override {
    // File by file: the torch wheel's libtorch.so exports a copy of
    // std::filesystem::remove_all that crashes (calls a null pointer).
    std::error_code ec;
    for (const auto &entry : fs::directory_iterator(tempDir(), ec))
      fs::remove(entry.path(), ec);
    fs::remove(tempDir(), ec);
  }
};
const auto *const kCleanup = ::testing::AddGlobalTestEnvironment(new TempDirCleanup);

ModelConfig nano(LkBackend backend, ModelOverrides o = {}) {
  o.backend = backend;
  return models::modelConfig("slak_nano", o);
}

std::map<std::string, std::string> nameMap(Classifier &model) {
  std::map<std::string, std::string> out;
  for (const auto &[ours, official] : models::officialTensorNames(model))
    out[ours] = official;
  return out;
}

std::map<std::string, torch::Tensor> tensorsOf(Classifier &model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto &p : model.named_parameters())
    out[p.key()] = p.value();
  for (const auto &b : model.named_buffers())
    out[b.key()] = b.value();
  return out;
}

/// Official names -> shapes of `model`'s tensors.
std::map<std::string, std::vector<int64_t>> officialShapes(Classifier &model) {
  auto tensors = tensorsOf(model);
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto &[ours, official] : models::officialTensorNames(model))
    out[official] = tensors.at(ours).sizes().vec();
  return out;
}

/// Random weights with ~40% exact zeros in the large kernels and pwconv1,
/// random BatchNorm statistics.
void randomize(Classifier &model, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard noGrad;
  for (auto &p : model.named_parameters()) {
    torch::Tensor t = p.value();
    const std::string &n = p.key();
    t.copy_(torch::randn_like(t) * (t.dim() >= 2 ? 0.2 : 0.1) + (t.dim() == 1 ? 1.0 : 0.0));
    if ((n.find("large_kernel") != std::string::npos && t.dim() == 4) ||
        n.find("pwconv1.weight") != std::string::npos)
      t.mul_((torch::rand_like(t) >= 0.4).to(t.scalar_type()));
  }
  for (auto &b : model.named_buffers()) {
    torch::Tensor t = b.value();
    if (b.key().find("running_var") != std::string::npos)
      t.copy_(torch::rand_like(t) + 0.5);
    else if (b.key().find("running_mean") != std::string::npos)
      t.copy_(torch::randn_like(t) * 0.1);
  }
}

void writeBytes(const fs::path &path, const std::vector<char> &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<char> readBytes(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// `model` saved as the official code does: {"model": state dict with the
/// official names, "epoch": 7, ...} in torch.save's zip format.
fs::path writeOfficial(const std::string &name, Classifier &model,
                       const std::map<std::string, torch::Tensor> &extra = {},
                       const std::string &section = "model") {
  c10::Dict<std::string, torch::Tensor> sd;
  auto tensors = tensorsOf(model);
  for (const auto &[ours, official] : models::officialTensorNames(model))
    sd.insert(official, tensors.at(ours).detach().clone());
  for (const auto &[k, v] : extra)
    sd.insert(k, v);
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert(section, sd);
  top.insert("epoch", int64_t(7));
  top.insert("optimizer", c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
  const fs::path path = tempDir() / name;
  writeBytes(path, torch::pickle_save(top));
  return path;
}

std::string loadError(const fs::path &path, Classifier &model, bool ema = false) {
  try {
    models::loadCheckpoint(path.string(), model, ema);
  } catch (const std::runtime_error &e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_HAS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << text

} // namespace

TEST(OfficialNames, LibTorchBackend) {
  auto model = models::createModel(nano(LkBackend::Torch));
  auto names = nameMap(*model);
  const std::string lk = "stages.0.0.large_kernel.";
  EXPECT_EQ(names.at(lk + "branch0.weight"), lk + "LoRA1.conv.weight");
  EXPECT_EQ(names.at(lk + "branch1.bn.running_var"), lk + "LoRA2.bn.running_var");
  EXPECT_EQ(names.at(lk + "branch2.bn.num_batches_tracked"),
            lk + "small_conv.bn.num_batches_tracked");
  EXPECT_EQ(names.at(lk + "branch2.weight"), lk + "small_conv.conv.weight");
  for (const char *same :
       {"downsample_layers.0.0.weight", "downsample_layers.1.0.weight", "stages.2.1.pwconv2.bias",
        "stages.2.1.gamma", "stages.0.1.norm.weight", "norm.weight", "head.bias"})
    EXPECT_EQ(names.at(same), same);
}

TEST(OfficialNames, BothBackendsGiveTheSameOfficialNames) {
  if (!models::runtimeLargeKernelAvailable())
    GTEST_SKIP() << "this build has no runtime large-kernel backend";
  auto runtime = models::createModel(nano(LkBackend::Runtime));
  auto torchModel = models::createModel(nano(LkBackend::Torch));
  auto names = nameMap(*runtime);
  const std::string lk = "stages.1.1.large_kernel.";
  EXPECT_EQ(names.at(lk + "lk.lora1_weight"), lk + "LoRA1.conv.weight");
  EXPECT_EQ(names.at(lk + "lk.lora2_bn.weight"), lk + "LoRA2.bn.weight");
  EXPECT_EQ(names.at(lk + "lk.small_bn.running_mean"), lk + "small_conv.bn.running_mean");
  EXPECT_EQ(officialShapes(*runtime), officialShapes(*torchModel));
}

TEST(OfficialNames, SquareKernelIsLkbOrigin) {
  ModelOverrides o;
  o.decomposed = false;
  auto model = models::createModel(nano(LkBackend::Torch, o));
  auto names = nameMap(*model);
  const std::string lk = "stages.0.0.large_kernel.";
  EXPECT_EQ(names.at(lk + "branch0.weight"), lk + "lkb_origin.conv.weight");
  EXPECT_EQ(names.at(lk + "branch1.bn.bias"), lk + "small_conv.bn.bias");
  auto shape = models::describeOfficialModel(officialShapes(*model));
  EXPECT_FALSE(shape.decomposed);
  EXPECT_EQ(models::fittingFlags(shape, nano(LkBackend::Torch)), "--decomposed false");
}

TEST(OfficialNames, OlderDecomNames) {
  EXPECT_EQ(models::legacyOfficialNames("stages.0.0.large_kernel.LoRA1.bn.weight"),
            std::vector<std::string>{"stages.0.0.large_kernel.Decom1.bn.weight"});
  EXPECT_EQ(models::legacyOfficialNames("stages.0.0.large_kernel.LoRA2.conv.weight"),
            std::vector<std::string>{"stages.0.0.large_kernel.Decom2.conv.weight"});
  EXPECT_TRUE(
      models::legacyOfficialNames("stages.0.0.large_kernel.small_conv.conv.weight").empty());
}

TEST(OfficialDeduction, KernelSizesWidthAndDepth) {
  ModelOverrides o;
  o.widthFactor = 0.25;
  o.kernelSizes = std::vector<int>{31, 29, 27, 13};
  o.backend = LkBackend::Torch;
  auto tiny31 = models::createModel(models::modelConfig("slak_tiny", o));
  auto shape = models::describeOfficialModel(officialShapes(*tiny31));
  EXPECT_EQ(shape.depths, (std::vector<int64_t>{3, 3, 9, 3}));
  EXPECT_EQ(shape.dims, (std::vector<int64_t>{24, 48, 96, 192}));
  EXPECT_EQ(shape.kernelSizes, (std::vector<int>{31, 29, 27, 13}));
  EXPECT_EQ(shape.smallKernel, 5);
  EXPECT_EQ(shape.registryName, "slak_tiny");
  EXPECT_DOUBLE_EQ(shape.widthFactor, 0.25);
  EXPECT_EQ(shape.numClasses, 1000);
  EXPECT_EQ(shape.inChannels, 3);
  EXPECT_EQ(shape.stemKernel, 4);

  ModelOverrides w;
  w.widthFactor = 0.25;
  EXPECT_EQ(models::fittingFlags(shape, models::modelConfig("slak_tiny", w)),
            "--kernel-sizes 31,29,27,13");
  EXPECT_EQ(models::fittingFlags(shape, models::modelConfig("slak_tiny")),
            "--width-factor 0.25 --kernel-sizes 31,29,27,13");
  ModelOverrides fashion = w;
  fashion.numClasses = 10;
  fashion.inChannels = 1;
  EXPECT_EQ(models::fittingFlags(shape, models::modelConfig("slak_tiny", fashion)),
            "--kernel-sizes 31,29,27,13 --in-channels 3 --classes 1000");
  // 27 blocks in stage 3: slak_small.
  ModelOverrides s = w;
  s.backend = LkBackend::Torch;
  auto small = models::createModel(models::modelConfig("slak_small", s));
  auto smallShape = models::describeOfficialModel(officialShapes(*small));
  EXPECT_EQ(smallShape.registryName, "slak_small");
  EXPECT_EQ(models::fittingFlags(smallShape, models::modelConfig("slak_tiny", w)),
            "--model slak_small --width-factor 0.25");
  // The meta/config the tools compare against.
  auto json = nlohmann::json::parse(models::officialModelConfigJson(shape));
  EXPECT_EQ(json["name"], "slak_tiny");
  EXPECT_EQ(json["kernel_sizes"], (std::vector<int>{31, 29, 27, 13}));
  EXPECT_EQ(json["stem_stride"], 4);
}

TEST(OfficialLoad, RoundTripWithMasksFromZeros) {
  auto source = models::createModel(nano(LkBackend::Torch));
  randomize(*source, 1);
  const fs::path path = writeOfficial("nano.pth", *source);
  ASSERT_NE(models::OfficialCheckpoint::open(path.string()), nullptr);

  const LkBackend backend =
      models::runtimeLargeKernelAvailable() ? LkBackend::Runtime : LkBackend::Torch;
  auto model = models::createModel(nano(backend));
  models::LoadedCheckpoint loaded = models::loadCheckpoint(path.string(), *model);
  EXPECT_EQ(loaded.source, "official SLaK checkpoint " + path.string() + " (epoch 7)");
  EXPECT_FALSE(loaded.ema);

  // Every tensor, by its official name.
  auto sourceTensors = tensorsOf(*source);
  std::map<std::string, torch::Tensor> byOfficial;
  for (const auto &[ours, official] : models::officialTensorNames(*source))
    byOfficial[official] = sourceTensors.at(ours);
  auto tensors = tensorsOf(*model);
  for (const auto &[ours, official] : models::officialTensorNames(*model))
    EXPECT_TRUE(torch::equal(tensors.at(ours), byOfficial.at(official))) << ours;

  // Masks: w != 0 on every rank-2/4 weight with a zero, pushed to the layers.
  EXPECT_TRUE(loaded.masks.count("stages.0.1.pwconv1.weight"));
  EXPECT_FALSE(loaded.masks.count("stages.0.1.pwconv2.weight")); // no zeros there
  for (auto &[path, layer] : models::largeKernelLayers(*model)) {
    ASSERT_EQ(layer->branchMasks().size(), layer->numBranches()) << path;
    for (size_t b = 0; b < layer->numBranches(); ++b) {
      torch::Tensor mask = layer->branchMasks()[b];
      ASSERT_TRUE(mask.defined()) << path;
      EXPECT_TRUE(torch::equal(mask.ne(0), layer->branchWeight(b).ne(0))) << path;
    }
  }

  // The same logits.
  source->eval();
  model->eval();
  torch::NoGradGuard noGrad;
  torch::Tensor x = torch::randn({2, 1, 28, 28});
  torch::Tensor want = source->forward(x), got = model->forward(x);
  EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-4 * want.abs().max().item<double>()))
      << (got - want).abs().max().item<double>();

  // checkpointConfig describes the file's model.
  auto config = nlohmann::json::parse(models::checkpointConfig(path.string()));
  EXPECT_EQ(config["name"], "slak_nano");
  EXPECT_EQ(config["kernel_sizes"], (std::vector<int>{13, 13, 7}));
}

TEST(OfficialLoad, KernelSizeMismatchNamesTensorAndFlags) {
  ModelOverrides o;
  o.kernelSizes = std::vector<int>{11, 9, 7};
  auto other = models::createModel(nano(LkBackend::Torch, o));
  const fs::path path = writeOfficial("k11.pth", *other);
  auto model = models::createModel(nano(LkBackend::Torch));
  const std::string error = loadError(path, *model);
  EXPECT_HAS(error, "checkpoint " + path.string() + " (official SLaK checkpoint): ");
  EXPECT_HAS(error, "stages.0.0.large_kernel.LoRA1.conv.weight has shape [41, 1, 11, 5] in the "
                    "file, [41, 1, 13, 5] in the model");
  EXPECT_HAS(error, "it fits --kernel-sizes 11,9,7");
  EXPECT_EQ(error.find('\n'), std::string::npos);
}

TEST(OfficialLoad, ExtraMissingMergedAndEma) {
  auto source = models::createModel(nano(LkBackend::Torch));
  auto model = models::createModel(nano(LkBackend::Torch));

  auto extra = writeOfficial("extra.pth", *source, {{"foo.weight", torch::zeros({3})}});
  EXPECT_HAS(loadError(extra, *model), "the file has 1 tensor(s) the model does not (foo.weight)");

  auto merged =
      writeOfficial("merged.pth", *source,
                    {{"stages.0.0.large_kernel.lkb_reparam.weight", torch::zeros({41, 1, 13, 13})},
                     {"stages.0.0.large_kernel.lkb_reparam.bias", torch::zeros({41})}});
  EXPECT_HAS(loadError(merged, *model), "merged large kernels (lkb_reparam");
  EXPECT_HAS(loadError(merged, *model), "load the un-merged checkpoint");

  auto plain = writeOfficial("plain.pth", *source);
  EXPECT_HAS(loadError(plain, *model, /*ema=*/true), "has no model_ema weights");
  EXPECT_HAS(loadError(plain, *model, /*ema=*/true), "drop --ema");

  auto emaOnly = writeOfficial("ema.pth", *source, {}, "model_ema");
  EXPECT_HAS(loadError(emaOnly, *model), "has only model_ema weights: pass --ema");
  EXPECT_NO_THROW(models::loadCheckpoint(emaOnly.string(), *model, /*ema=*/true));

  // Tensors the file lacks: named by both names, with the flag that fits.
  ModelOverrides noBn;
  noBn.branchBatchNorm = false;
  auto withoutBn = models::createModel(nano(LkBackend::Torch, noBn));
  const std::string error = loadError(writeOfficial("nobn.pth", *withoutBn), *model);
  EXPECT_HAS(error, "stages.0.0.large_kernel.LoRA1.bn.weight (the model's "
                    "stages.0.0.large_kernel.branch0.bn.weight) is missing from the file");
  EXPECT_HAS(error, "it fits --branch-bn false");

  // Fewer stages in the file than in the model.
  ModelConfig two = nano(LkBackend::Torch);
  two.depths = {2, 2};
  two.baseDims = {32, 64};
  two.kernelSizes = {13, 13};
  auto shallow = models::createModel(two);
  EXPECT_HAS(loadError(writeOfficial("shallow.pth", *shallow), *model),
             "downsample_layers.2.0.weight is missing from the file");
}

TEST(OfficialFiles, CorruptTruncatedLegacyAndOthers) {
  auto model = models::createModel(nano(LkBackend::Torch));
  const fs::path good = writeOfficial("good.pth", *model);
  const std::vector<char> bytes = readBytes(good);

  const fs::path truncated = tempDir() / "truncated.pth";
  writeBytes(truncated, std::vector<char>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  EXPECT_HAS(loadError(truncated, *model),
             "is not a readable PyTorch zip archive (truncated or corrupt?)");

  const fs::path garbage = tempDir() / "garbage.pth";
  std::vector<char> junk = {'P', 'K', 3, 4};
  junk.resize(4096, 'x');
  writeBytes(garbage, junk);
  EXPECT_HAS(loadError(garbage, *model), "truncated or corrupt");

  const fs::path legacy = tempDir() / "legacy.pth";
  writeBytes(legacy, {'\x80', '\x02', '\x8a', '\x0a', '\x6c', '\xfc', '\x9c', '\x46', '\xf9',
                      '\x20', '\x6a', '\xa8', '\x50', '\x19', '.'});
  EXPECT_HAS(loadError(legacy, *model), "legacy torch.save format of PyTorch < 1.6");

  // A torch.save file of something else: named, not misread.
  const fs::path tensor = tempDir() / "tensor.pt";
  writeBytes(tensor, torch::pickle_save(torch::ones({2, 2})));
  EXPECT_HAS(loadError(tensor, *model), "top-level object is a tensor, not an official SLaK");

  // slak-train checkpoints (TorchScript archives) and other files are not
  // official ones: the usual reader answers for them.
  const fs::path archive = tempDir() / "archive.pt";
  {
    torch::serialize::OutputArchive out;
    out.write("x", torch::ones({1}));
    out.save_to(archive.string());
  }
  EXPECT_EQ(models::OfficialCheckpoint::open(archive.string()), nullptr);
  const fs::path text = tempDir() / "text.txt";
  writeBytes(text, {'h', 'e', 'l', 'l', 'o'});
  EXPECT_EQ(models::OfficialCheckpoint::open(text.string()), nullptr);
  EXPECT_EQ(models::OfficialCheckpoint::open((tempDir() / "none.pth").string()), nullptr);
}

// Both checkpoint kinds, damaged after they were written: LibTorch's zip
// reader does not check the records' CRC-32, so without our check a flipped
// byte in a tensor loads as a wrong weight with no error.
TEST(CheckpointFiles, DamagedRecordIsRefusedOnBothKinds) {
  auto model = models::createModel(nano(LkBackend::Torch));
  auto flipByteOf = [](const fs::path &path, const std::string &record) {
    size_t offset = 0;
    {
      caffe2::serialize::PyTorchStreamReader reader(path.string());
      offset = reader.getRecordOffset(record);
    }
    std::vector<char> bytes = readBytes(path);
    bytes.at(offset + 1) ^= 0x40;
    writeBytes(path, bytes);
  };

  const fs::path official = writeOfficial("damaged.pth", *model);
  EXPECT_EQ(loadError(official, *model), "(no error)");
  flipByteOf(official, "data/0");
  const std::string officialError = loadError(official, *model);
  EXPECT_HAS(officialError, "damaged.pth is corrupt: record data/0");
  EXPECT_HAS(officialError, "CRC-32");

  const fs::path trained = tempDir() / "damaged.pt";
  {
    torch::serialize::OutputArchive root, weights;
    model->save(weights);
    root.write("model", weights);
    root.save_to(trained.string());
  }
  EXPECT_EQ(loadError(trained, *model), "(no error)");
  flipByteOf(trained, "data/0");
  const std::string trainedError = loadError(trained, *model);
  EXPECT_HAS(trainedError, "damaged.pt is corrupt: record data/0");
  EXPECT_HAS(trainedError, "the file was damaged after it was written");
}

// A file of another kind given as a checkpoint is named for what it is.
TEST(CheckpointFiles, WrongKindsAreNamed) {
  auto model = models::createModel(nano(LkBackend::Torch));
  const std::vector<std::pair<std::vector<char>, std::string>> files = {
      {{'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n', 0, 0, 0, 13}, "is a PNG image"},
      {{'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f', 'o', 'r', 'm', 'a', 't', ' ', '3', 0, 16, 0},
       "is an SQLite database"},
      {{'\x1f', '\x8b', 8, 0}, "is a gzip file"},
      {{}, "is an empty file"},
  };
  int k = 0;
  for (const auto &[bytes, expected] : files) {
    const fs::path path = tempDir() / ("kind" + std::to_string(k++) + ".pt");
    writeBytes(path, bytes);
    const std::string error = loadError(path, *model);
    EXPECT_HAS(error, expected);
    EXPECT_HAS(error, "not a checkpoint");
  }
  const fs::path mlir = tempDir() / "model.mlir";
  std::ofstream(mlir) << "func.func @f(%x: tensor<1xf32>) -> tensor<1xf32> {\n"
                         "  return %x : tensor<1xf32>\n}\n";
  EXPECT_HAS(loadError(mlir, *model), "is MLIR text, not a checkpoint");
  const fs::path package = tempDir() / "pkg";
  fs::create_directories(package);
  std::ofstream(package / "manifest.json") << "{}\n";
  EXPECT_HAS(loadError(package, *model), "is a folder (a kernel package?), not a checkpoint");
}

// A slak-train checkpoint of the other large-kernel backend names the flag
// that reads it, not "another model".
TEST(CheckpointFiles, OtherBackendNamesTheFlag) {
  auto runtimeModel = models::createModel(nano(LkBackend::Runtime));
  auto torchModel = models::createModel(nano(LkBackend::Torch));
  auto save = [](Classifier &model, const std::string &name) {
    const fs::path path = tempDir() / name;
    torch::serialize::OutputArchive root, weights;
    model.save(weights);
    root.write("model", weights);
    root.save_to(path.string());
    return path;
  };
  const std::string intoTorch = loadError(save(*runtimeModel, "runtime.pt"), *torchModel);
  EXPECT_HAS(intoTorch, "trained with --lk-backend runtime");
  EXPECT_HAS(intoTorch, "pass --lk-backend runtime");
  EXPECT_EQ(intoTorch.find("another model"), std::string::npos) << intoTorch;
  EXPECT_HAS(loadError(save(*torchModel, "torch.pt"), *runtimeModel), "pass --lk-backend torch");
}
