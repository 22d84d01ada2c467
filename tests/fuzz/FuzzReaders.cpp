// slak-fuzz-readers: the MLIR-free input readers. The first input byte picks
// the reader, the rest is its input (see kReaders and docs/fuzzing.md).
//
// A reader may refuse its input (it throws std::exception or reports why);
// it must not crash, hang or trip a sanitizer. Where a reader accepts its
// input the target also checks what the accepted value promises (a parsed
// schedule prints back to itself, a parsed layer is a valid spec whose
// default kernels can be generated, ...) and aborts naming the broken
// promise.
#include "autotune/CpuScheduleLookup.h"
#include "autotune/Device.h"
#include "autotune/Lookup.h"
#include "autotune/ScheduleText.h"
#include "autotune/Tuner.h"
#include "autotune/TuningDatabase.h"
#include "autotune/Workload.h"
#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"
#include "codegen/package/KernelPackage.h"
#include "runtime/KernelCache.h"

#include <sqlite3.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/FuzzSupport.h"

namespace fs = std::filesystem;
namespace autotune = slak::autotune;
namespace codegen = slak::codegen;
namespace runtime = slak::runtime;

namespace {

const std::string &tmp() { return slak::fuzz::processTempDir("slak-fuzz-readers"); }

[[noreturn]] void bug(const std::string &what, std::string_view input) {
  std::fprintf(stderr, "slak-fuzz-readers: BUG: %s\n--- input ---\n%.*s\n", what.c_str(),
               static_cast<int>(input.size()), input.data());
  std::abort();
}

/// Why a reader refused its input, with SLAK_FUZZ_VERBOSE=1.
void refused(const char *what, const std::string &why) {
  if (slak::fuzz::verbose())
    std::fprintf(stderr, "slak-fuzz-readers: %s refused: %s\n", what, why.c_str());
}

void writeFile(const fs::path &path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::perror(("cannot write " + path.string()).c_str());
    std::abort();
  }
}

/// Splits `input` at each kSeparator: the files of a package, the columns
/// of a row.
constexpr std::string_view kSeparator = "\n--8<--\n";
std::vector<std::string_view> split(std::string_view input, size_t maxParts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < maxParts) {
    const size_t at = input.find(kSeparator);
    if (at == std::string_view::npos)
      break;
    parts.push_back(input.substr(0, at));
    input.remove_prefix(at + kSeparator.size());
  }
  parts.push_back(input);
  return parts;
}

/// The small SLaK layer whose key the database rows are stored under.
const codegen::KernelSpec &rowSpec() {
  static const codegen::KernelSpec spec =
      autotune::parseLayer("channels=4,size=8,branches=7x3+3x7+3x3,density=0.5").spec;
  return spec;
}

// --- readers --------------------------------------------------------------

/// A kernel package: manifest.json, then data.bin, kernels.cu and kernels.cl
/// (each optional) after separators.
void readPackage(std::string_view input) {
  const std::vector<std::string_view> parts = split(input, 4);
  const fs::path dir = tmp() + "/package";
  fs::create_directories(dir);
  const char *names[] = {"manifest.json", "data.bin", "kernels.cu", "kernels.cl"};
  for (size_t i = 0; i < 4; ++i) {
    if (i < parts.size())
      writeFile(dir / names[i], parts[i]);
    else
      fs::remove(dir / names[i]);
  }
  codegen::KernelPackage package;
  try {
    package = codegen::readKernelPackage(dir.string());
  } catch (const std::runtime_error &e) {
    return refused("kernel package", e.what());
  }
  // The reader validated each spec: the runtime may generate and launch it.
  for (const codegen::PackagedOp &op : package.ops) {
    try {
      codegen::emitKernels(op.kernels.spec);
    } catch (const std::exception &e) {
      bug("readKernelPackage accepted op '" + op.name + "' (" + op.kernels.spec.signature() +
              ") but emitKernels refuses it: " + e.what(),
          input);
    }
  }
}

/// A GPU schedule as the tuning database stores it.
void readGpuSchedule(std::string_view input) {
  codegen::Schedule s;
  try {
    s = autotune::parseSchedule(std::string(input));
  } catch (const std::invalid_argument &e) {
    return refused("GPU schedule", e.what());
  }
  const std::string text = s.str();
  try {
    if (autotune::parseSchedule(text).str() != text)
      bug("GPU schedule '" + text + "' does not read back to itself", input);
  } catch (const std::exception &e) {
    bug("GPU schedule '" + text + "' (printed from a parsed one) does not parse: " + e.what(),
        input);
  }
}

/// A CPU (Halide) schedule as the tuning database holds it.
void readCpuSchedule(std::string_view input) {
  autotune::CpuSchedule s;
  try {
    s = autotune::parseCpuSchedule(std::string(input));
  } catch (const std::invalid_argument &e) {
    return refused("CPU schedule", e.what());
  }
  const std::string text = s.str();
  try {
    if (!(autotune::parseCpuSchedule(text) == s))
      bug("CPU schedule '" + text + "' does not read back to itself", input);
  } catch (const std::exception &e) {
    bug("CPU schedule '" + text + "' (printed from a parsed one) does not parse: " + e.what(),
        input);
  }
}

/// A kernel-cache entry file. The first byte says whether to repair the
/// header and payload checksums (so the checks behind them are reached).
void readCacheEntry(std::string_view input) {
  if (input.empty())
    return;
  const unsigned mode = static_cast<unsigned char>(input[0]);
  std::string file(input.substr(1));
  auto u64 = [&](size_t at) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
      v |= uint64_t(static_cast<unsigned char>(file[at + i])) << (8 * i);
    return v;
  };
  auto put64 = [&](size_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i)
      file[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  runtime::CacheKey key{0x0123456789abcdefull, 0xfedcba9876543210ull};
  if (file.size() >= 64) {
    key = {u64(16), u64(24)}; // the entry's own key, so the key check passes
    if (mode & 2)
      put64(40, runtime::fnv1a64(std::string_view(file).substr(64)));
    if (mode & 1)
      put64(48, runtime::fnv1a64(std::string_view(file.data(), 48)));
  }
  std::string why;
  const std::optional<std::string> payload = runtime::decodeCacheEntry(file, key, &why);
  if (!payload && why.empty())
    bug("decodeCacheEntry refused an entry without saying why", input);
  if (!payload)
    refused("kernel cache entry", why);

  // The same through the cache's files: an invalid entry is removed.
  runtime::KernelCache cache(tmp() + "/cache");
  const std::string path = cache.entryPath("cuda", key);
  fs::create_directories(fs::path(path).parent_path());
  writeFile(path, file);
  const std::optional<std::string> loaded = cache.load("cuda", key);
  if (loaded != payload)
    bug("KernelCache::load and decodeCacheEntry disagree", input);
  if (!loaded && fs::exists(path))
    bug("KernelCache::load kept an invalid entry file", input);
  fs::remove(path);

  // Whatever is encoded decodes to itself.
  const std::string_view anyPayload = input.substr(1);
  const std::optional<std::string> back =
      runtime::decodeCacheEntry(runtime::encodeCacheEntry(key, anyPayload), key);
  if (!back || *back != anyPayload)
    bug("an encoded cache entry does not decode to its payload", input);
}

/// A `slak-autotune --layer` description.
void readLayer(std::string_view input) {
  autotune::LayerDescription layer;
  try {
    layer = autotune::parseLayer(std::string(input));
  } catch (const std::invalid_argument &e) {
    return refused("--layer", e.what());
  }
  if (std::string err = layer.spec.validate(); !err.empty())
    bug("parseLayer accepted a spec that does not validate: " + err, input);
  if (std::string err = autotune::checkWorkload(layer.spec, layer.workload); !err.empty())
    bug("parseLayer's workload does not fit its spec: " + err, input);
  // What slak-autotune does next: schedules for it, starting from the
  // default, which fits every layer the kernels can run (windows too large
  // for any tile are refused with a message saying so).
  codegen::KernelSpec spec = layer.spec;
  try {
    spec.schedule = codegen::defaultSchedule(spec, layer.workload.density);
  } catch (const std::invalid_argument &e) {
    if (std::string(e.what()).find("no schedule fits this layer") == std::string::npos)
      bug(std::string("defaultSchedule refuses a parsed layer: ") + e.what(), input);
    return refused("--layer", e.what());
  }
  try {
    codegen::emitKernels(spec);
  } catch (const std::exception &e) {
    bug("the default schedule of a parsed layer cannot be generated: " + std::string(e.what()),
        input);
  }
}

/// One row of each table of a slak tuning database, columns from the input:
/// choice schedule, origin, kinds, workload, then a measurement's schedule,
/// kind, samples. Then what the pass and the runtime read from it.
void readDatabaseRows(std::string_view input) {
  static sqlite3 *writer = nullptr;
  static std::unique_ptr<autotune::TuningDatabase> db;
  const std::string path = tmp() + "/rows.db";
  if (!db) {
    db = std::make_unique<autotune::TuningDatabase>(path); // creates the schema
    if (sqlite3_open(path.c_str(), &writer) != SQLITE_OK)
      bug("cannot open " + path, input);
    sqlite3_exec(writer, "PRAGMA synchronous=OFF", nullptr, nullptr, nullptr);
  }
  std::vector<std::string_view> columns = split(input, 7);
  columns.resize(7);
  const std::string signature = autotune::problemSignature(rowSpec());
  const std::string gpuCompiler = autotune::compilerVersion(autotune::KernelFamily::Cuda);
  const std::string cpuCompiler = autotune::compilerVersion(autotune::KernelFamily::Cpu);
  const std::string cpuKey = "cpu:fuzz:1t";

  sqlite3_exec(writer, "BEGIN; DELETE FROM choices; DELETE FROM measurements;", nullptr, nullptr,
               nullptr);
  sqlite3_stmt *choice = nullptr, *measurement = nullptr;
  sqlite3_prepare_v2(writer,
                     "INSERT OR IGNORE INTO choices(signature, device, compiler, backend, "
                     "schedule, origin, kinds, workload) VALUES (?1, ?2, ?3, 'cuda', ?4, ?5, ?6, "
                     "?7)",
                     -1, &choice, nullptr);
  sqlite3_prepare_v2(writer,
                     "INSERT INTO measurements(signature, device, compiler, backend, kind, "
                     "schedule, workload, samples) VALUES (?1, ?2, ?3, 'cuda', ?4, ?5, ?6, ?7)",
                     -1, &measurement, nullptr);
  auto text = [](sqlite3_stmt *st, int i, std::string_view s) {
    sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  };
  for (const auto &[device, compiler] :
       {std::pair{std::string("a100"), gpuCompiler}, std::pair{cpuKey, cpuCompiler}}) {
    text(choice, 1, signature);
    text(choice, 2, device);
    text(choice, 3, compiler);
    for (int i = 0; i < 4; ++i)
      text(choice, 4 + i, columns[i]);
    sqlite3_step(choice); // a CHECK (origin) failure is fine: no row
    sqlite3_reset(choice);
    text(measurement, 1, signature);
    text(measurement, 2, device);
    text(measurement, 3, compiler);
    text(measurement, 4, columns[5]);
    text(measurement, 5, columns[4]);
    text(measurement, 6, columns[3]);
    text(measurement, 7, columns[6]);
    sqlite3_step(measurement);
    sqlite3_reset(measurement);
  }
  sqlite3_finalize(choice);
  sqlite3_finalize(measurement);
  sqlite3_exec(writer, "COMMIT", nullptr, nullptr, nullptr);

  try {
    db->choices();
    db->measurements({signature, "a100", gpuCompiler});
    autotune::lookupSchedule(db.get(), rowSpec(), "a100-80gb", 0.5);
    autotune::lookupCpuSchedule(db.get(), rowSpec(), cpuKey, 8, 8);
  } catch (const std::exception &e) {
    refused("tuning database row", e.what()); // with a message: fine
  }
}

/// A whole file given as the tuning database: refused with an error naming
/// it unless it is a slak tuning database, and never modified when refused.
void readDatabaseFile(std::string_view input) {
  const std::string path = tmp() + "/file.db";
  for (const char *suffix : {"", "-wal", "-shm", "-journal"})
    fs::remove(path + suffix);
  writeFile(path, input);
  try {
    autotune::TuningDatabase db(path, autotune::TuningDatabase::Access::ReadOnly, 0);
    db.choices();
    db.measurementCount();
  } catch (const autotune::TuningDatabaseError &e) {
    if (std::string(e.what()).find(path) == std::string::npos)
      bug(std::string("a tuning database error does not name the file: ") + e.what(), input);
    refused("tuning database file", e.what());
  } catch (const std::exception &e) {
    refused("tuning database file", e.what());
  }
  std::string error;
  autotune::lookupScheduleNoThrow(path, rowSpec(), "a100", 0.5, &error);
}

/// Names given on command lines and in the database: kernel kinds, GPU
/// names, schedule origins.
void readNames(std::string_view input) {
  const std::string text(input);
  try {
    autotune::parseKernelKinds(text);
  } catch (const std::invalid_argument &) {
  }
  try {
    const autotune::GpuDevice &gpu = autotune::findGpu(text);
    if (&autotune::findGpu(gpu.name) != &gpu)
      bug("findGpu(\"" + gpu.name + "\") is not the entry its own name came from", input);
  } catch (const std::invalid_argument &) {
  }
  autotune::canonicalGpuName(text);
  try {
    const autotune::ScheduleOrigin origin = autotune::parseOrigin(text);
    if (autotune::parseOrigin(autotune::originName(origin)) != origin)
      bug("schedule origin names do not read back", input);
  } catch (const std::invalid_argument &) {
  }
}

struct Reader {
  const char *name;
  void (*read)(std::string_view);
};

const Reader kReaders[] = {
    {"kernel package", readPackage},
    {"GPU schedule text", readGpuSchedule},
    {"CPU schedule text", readCpuSchedule},
    {"kernel cache entry", readCacheEntry},
    {"--layer", readLayer},
    {"tuning database rows", readDatabaseRows},
    {"tuning database file", readDatabaseFile},
    {"names", readNames},
};
constexpr size_t kNumReaders = sizeof(kReaders) / sizeof(kReaders[0]);

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  tmp();
  // The cache and database defaults must not reach the user's home.
  setenv("SLAK_CACHE_DIR", (tmp() + "/cache").c_str(), 1);
  setenv("SLAK_TUNING_DB", (tmp() + "/default.db").c_str(), 1);
  // The cache logs every invalid entry it removes: most inputs are one.
  setenv("SLAK_LOG", "0", 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  const Reader &reader = kReaders[data[0] % kNumReaders];
  reader.read(std::string_view(reinterpret_cast<const char *>(data) + 1, size - 1));
  return 0;
}
