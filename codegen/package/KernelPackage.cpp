#include "codegen/package/KernelPackage.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <type_traits>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

namespace slak::codegen {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

/// The files of a package, manifest first (it is written last).
constexpr const char *kPackageFiles[] = {"manifest.json", "kernels.cu", "kernels.cl", "data.bin"};

uint64_t fnv1a64(const std::string &bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes)
    h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string hex64(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

/// Writes `bytes` to a new file and flushes it to the disk.
void writeFile(const std::string &path, const std::string &bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      throw std::runtime_error("cannot write " + path + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

void fsyncFolder(const std::string &dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

bool exists(const std::string &path, bool *isFolder = nullptr) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0)
    return false;
  if (isFolder)
    *isFolder = S_ISDIR(st.st_mode);
  return true;
}

/// rm -rf on POSIX calls (std::filesystem::remove_all crashes in processes
/// that load LibTorch, which exports its own copy; runtime/Files.h).
void removeTree(const std::string &path) {
  if (!exists(path))
    return;
  ::nftw(
      path.c_str(),
      [](const char *name, const struct stat *, int, struct FTW *) { return ::remove(name); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

/// The names in `dir` (without "." and "..").
std::vector<std::string> folderEntries(const std::string &dir) {
  std::vector<std::string> names;
  if (DIR *d = ::opendir(dir.c_str())) {
    while (const dirent *e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
        names.push_back(e->d_name);
    ::closedir(d);
  }
  return names;
}

/// Where the package goes: "pkg/" -> "pkg"; an existing folder by its real
/// path, so that "." or "a/.." have a parent and a name.
std::string packageFolder(const std::string &dir) {
  std::string path = dir;
  while (path.size() > 1 && path.back() == '/')
    path.pop_back();
  if (char *real = ::realpath(path.c_str(), nullptr)) {
    path = real;
    std::free(real);
  }
  return path;
}

std::string parentOf(const std::string &path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string baseName(const std::string &path) { return path.substr(path.find_last_of('/') + 1); }

/// Staging and replaced folders of writers that were killed:
/// <name>.tmp-<pid>-<n> and <name>.old-<pid> whose process is gone.
void removeStaleSiblings(const std::string &folder) {
  const std::string parent = parentOf(folder), name = baseName(folder);
  for (const std::string &entry : folderEntries(parent)) {
    for (const char *tag : {".tmp-", ".old-"}) {
      const std::string prefix = name + tag;
      if (entry.size() <= prefix.size() || entry.compare(0, prefix.size(), prefix) != 0)
        continue;
      const std::string rest = entry.substr(prefix.size());
      const std::string digits = rest.substr(0, rest.find('-'));
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
          digits.size() > 9)
        continue;
      const pid_t pid = static_cast<pid_t>(std::stol(digits));
      if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH)
        removeTree(parent + "/" + entry);
    }
  }
}

/// The first entry of an existing `folder` that no package writer made
/// (a package file, or the temporary file of an older per-file writer), or "".
std::string foreignEntry(const std::string &folder) {
  for (const std::string &entry : folderEntries(folder)) {
    bool ours = entry.find(".tmp.") != std::string::npos;
    for (const char *file : kPackageFiles)
      ours = ours || entry == file;
    if (!ours)
      return entry;
  }
  return {};
}

/// Puts the complete `staging` folder at `folder` in one step: renamed when
/// nothing is there, else exchanged with the old package (renameat2), which
/// is then removed. Where the file system cannot exchange, the old package
/// is renamed away first: a kill between the two renames leaves no package
/// (a clear "no manifest" error), never a mixed one.
void publish(const std::string &staging, const std::string &folder) {
  if (::rename(staging.c_str(), folder.c_str()) == 0)
    return;
  if (errno != ENOTEMPTY && errno != EEXIST)
    throw std::runtime_error("cannot rename " + staging + " to " + folder + ": " +
                             std::strerror(errno));
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, folder.c_str(), RENAME_EXCHANGE) == 0) {
    removeTree(staging); // now the old package
    return;
  }
  const std::string old = folder + ".old-" + std::to_string(::getpid());
  removeTree(old);
  if (::rename(folder.c_str(), old.c_str()) != 0)
    throw std::runtime_error("cannot move the old package " + folder +
                             " aside: " + std::strerror(errno));
  if (::rename(staging.c_str(), folder.c_str()) != 0) {
    const int err = errno;
    ::rename(old.c_str(), folder.c_str());
    throw std::runtime_error("cannot rename " + staging + " to " + folder + ": " +
                             std::strerror(err));
  }
  removeTree(old);
}

/// data.bin: appends little-endian arrays and remembers where they went.
class DataFile {
public:
  template <typename T> json append(const std::vector<T> &values) {
    static_assert(sizeof(T) == 4, "data.bin holds 32-bit elements");
    const size_t offset = bytes.size();
    bytes.resize(offset + values.size() * 4);
    if (!values.empty()) // an empty vector's data() may be null, and memcpy's source must not be
      std::memcpy(bytes.data() + offset, values.data(), values.size() * 4);
    return json{{"offset", offset}, {"count", values.size()}};
  }
  std::string bytes;
};

/// One key per row of the schedule's field table (flags as booleans, pairs
/// as [a, b]), and where the schedule came from.
json scheduleJson(const Schedule &s, const std::string &origin) {
  const ScheduleTable<Schedule> &table = scheduleFields();
  const FieldValues values = fieldValues(table, s);
  json j{{"origin", origin}};
  size_t i = 0;
  for (const ScheduleField<Schedule> &f : table.fields) {
    if (f.kind == FieldKind::Flag)
      j[f.irKey] = values[i] != 0;
    else if (f.kind == FieldKind::Int)
      j[f.irKey] = values[i];
    else
      j[f.irKey] = json::array({values[i], values[i + 1]});
    i += f.components();
  }
  return j;
}

json specJson(const KernelSpec &spec) {
  json branches = json::array();
  for (const Branch &b : spec.branches)
    branches.push_back(json{{"kernel", {b.kernelH, b.kernelW}},
                            {"padding", {b.padH, b.padW}},
                            {"form", b.dense ? "dense" : "table"}});
  return json{{"channels", spec.channels},
              {"height", spec.height},
              {"width", spec.width},
              {"element_type", elementTypeName(spec.elementType)},
              {"per_branch_outputs", spec.perBranchOutputs},
              {"has_bias", spec.hasBias},
              {"dense_weight_grad", spec.denseWeightGrad},
              {"branches", branches}};
}

/// The kernel plan's threads and shared bytes, and for a static spec its
/// grid as blocks = base + per_batch * N (exact: the grids are affine in the
/// batch).
json launchJson(const KernelPlan &plan, KernelKind kind) {
  const KernelSpec &spec = plan.spec;
  json launch{{"threads", plan.threads[static_cast<int>(kind)]},
              {"shared_bytes", plan.sharedBytes[static_cast<int>(kind)]}};
  if (spec.height > 0 && spec.width > 0) {
    const int64_t one = plan.geometry(kind, 1, spec.height, spec.width).blocks;
    const int64_t two = plan.geometry(kind, 2, spec.height, spec.width).blocks;
    launch["blocks"] = json{{"base", 2 * one - two}, {"per_batch", two - one}};
  }
  return launch;
}

} // namespace

void writeKernelPackage(const std::string &dir, const std::vector<PackagedOp> &ops,
                        const std::string &generator) {
  if (dir.empty())
    throw std::runtime_error("the package folder is empty: pass -o DIR");
  const std::string folder = packageFolder(dir);
  bool isFolder = false;
  if (exists(folder, &isFolder)) {
    if (!isFolder)
      throw std::runtime_error("cannot write the package to " + dir +
                               ": it is a file, not a folder; pass a new or package folder");
    if (std::string other = foreignEntry(folder); !other.empty())
      throw std::runtime_error("refusing to write the package to " + dir + ": it holds '" + other +
                               "', which is not part of a kernel package (a package replaces the "
                               "whole folder); pass a new folder, or an older package to replace");
  }
  const std::string parent = parentOf(folder);
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec)
    throw std::runtime_error("cannot create the folder " + parent + " for the package " + dir +
                             ": " + ec.message());
  removeStaleSiblings(folder);

  DataFile data;
  json manifest{{"format", "slak-kernel-package"},
                {"version", kKernelPackageVersion},
                {"generator", generator},
                {"files", {{"cuda", "kernels.cu"}, {"opencl", "kernels.cl"}, {"data", "data.bin"}}},
                {"ops", json::array()}};
  std::vector<EmittedKernels> layers;
  for (const PackagedOp &op : ops) {
    const EmittedKernels &k = op.kernels;
    try {
      (void)json(op.name).dump();
    } catch (const json::type_error &) {
      throw std::invalid_argument(
          "the op name " + json(op.name).dump(-1, ' ', false, json::error_handler_t::replace) +
          " is not UTF-8 text; a kernel package stores op names as JSON: give the layer a "
          "UTF-8 name");
    }
    json entry{{"name", op.name},
               {"signature", k.spec.signature()},
               {"spec", specJson(k.spec)},
               {"schedule", scheduleJson(k.spec.schedule, op.scheduleOrigin)}};
    json entries, launch;
    const KernelPlan plan = planKernels(k.spec);
    for (int i = 0; i < kNumKernelKinds; ++i) {
      const auto kind = static_cast<KernelKind>(i);
      entries[kernelKindName(kind)] = k.name(kind);
      launch[kernelKindName(kind)] = launchJson(plan, kind);
    }
    entry["entry_points"] = entries;
    entry["launch"] = launch;
    if (op.table)
      entry["tap_table"] =
          json{{"offsets", data.append(op.table->offsets)}, {"taps", data.append(op.table->taps)}};
    else
      entry["tap_table"] = nullptr; // built at run time from live masks
    json weights = json::array();
    for (const std::vector<float> &w : op.weights)
      weights.push_back(w.empty() ? json(nullptr) : data.append(w));
    entry["weights"] = weights;
    entry["bias"] = op.bias.empty() ? json(nullptr) : data.append(op.bias);
    manifest["ops"].push_back(entry);
    layers.push_back(k);
  }

  // Everything goes into a staging folder next to the package, manifest last,
  // and the folder replaces the package in one rename: a reader sees the old
  // package or the new one, never a mix, even when this process is killed.
  const std::map<std::string, std::string> files = {
      {"kernels.cu", assembleSource(GpuLanguage::Cuda, layers)},
      {"kernels.cl", assembleSource(GpuLanguage::OpenCL, layers)},
      {"data.bin", data.bytes}};
  json checksums = json::object();
  for (const auto &[name, bytes] : files)
    checksums[name] = json{{"bytes", bytes.size()}, {"fnv1a64", hex64(fnv1a64(bytes))}};
  manifest["checksums"] = checksums;

  static std::atomic<int> writes{0}; // threads of one process get their own staging folder
  const std::string staging =
      folder + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(writes++);
  removeTree(staging);
  if (::mkdir(staging.c_str(), 0755) != 0)
    throw std::runtime_error("cannot create the staging folder " + staging + ": " +
                             std::strerror(errno));
  try {
    for (const auto &[name, bytes] : files)
      writeFile(staging + "/" + name, bytes);
    writeFile(staging + "/manifest.json", manifest.dump(2) + "\n");
    fsyncFolder(staging);
    publish(staging, folder);
  } catch (...) {
    removeTree(staging);
    throw;
  }
  fsyncFolder(parent);
}

// ---------------------------------------------------------------------------
// Reader.

namespace {

/// Reads a whole file; nullopt when it does not exist.
std::optional<std::string> readFile(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return std::nullopt;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

/// `value` as a T when it is an integer that T holds. nlohmann's own
/// get<int>() casts floats and wider integers without a check (1e300 as an
/// int is undefined behaviour; 4294967312 became 16).
template <typename T> std::optional<T> integerAs(const json &value) {
  static_assert(std::is_integral_v<T> && std::is_signed_v<T>, "signed integers only");
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    if (v <= static_cast<uint64_t>(std::numeric_limits<T>::max()))
      return static_cast<T>(v);
  } else if (value.is_number_integer()) {
    const int64_t v = value.get<int64_t>();
    if (v >= std::numeric_limits<T>::min() && v <= std::numeric_limits<T>::max())
      return static_cast<T>(v);
  }
  return std::nullopt;
}

/// Reads the parts of one op's manifest entry, naming the op and the key in
/// every error.
class EntryReader {
public:
  EntryReader(std::string where, const std::string &data) : where_(std::move(where)), data_(data) {}

  [[noreturn]] void fail(const std::string &what) const {
    throw std::runtime_error(where_ + ": " + what);
  }

  const json &at(const json &object, const char *key, const char *path) const {
    if (!object.is_object() || !object.contains(key))
      fail(std::string("missing \"") + path + "\"");
    return object.at(key);
  }

  template <typename T> T get(const json &object, const char *key, const char *path) const {
    const json &value = at(object, key, path);
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      if (std::optional<T> v = integerAs<T>(value))
        return *v;
      fail(std::string("\"") + path + "\" is " + value.dump() + ", expected an integer from " +
           std::to_string(std::numeric_limits<T>::min()) + " to " +
           std::to_string(std::numeric_limits<T>::max()));
    } else {
      try {
        return value.get<T>();
      } catch (const json::exception &) {
        fail(std::string("\"") + path + "\" has the wrong type: " + value.dump());
      }
    }
  }

  std::pair<int, int> pair(const json &object, const char *key, const char *path) const {
    const json &value = at(object, key, path);
    std::optional<int> first, second;
    if (value.is_array() && value.size() == 2) {
      first = integerAs<int>(value[0]);
      second = integerAs<int>(value[1]);
    }
    if (!first || !second)
      fail(std::string("\"") + path + "\" is " + value.dump() + ", expected [int, int]");
    return {*first, *second};
  }

  /// A data.bin blob {offset, count} of 32-bit elements.
  template <typename T> std::vector<T> blob(const json &ref, const std::string &path) const {
    if (!ref.is_object() || !ref.contains("offset") || !ref.contains("count") ||
        !ref["offset"].is_number_unsigned() || !ref["count"].is_number_unsigned())
      fail("\"" + path + "\" is " + ref.dump() + ", expected {\"offset\": N, \"count\": N}");
    const uint64_t offset = ref["offset"].get<uint64_t>(), count = ref["count"].get<uint64_t>();
    if (offset % 4 != 0 || offset > data_.size() || count > (data_.size() - offset) / 4)
      fail("\"" + path + "\" (offset " + std::to_string(offset) + ", " + std::to_string(count) +
           " elements) lies outside data.bin (" + std::to_string(data_.size()) + " bytes)");
    std::vector<T> values(count);
    if (count)
      std::memcpy(values.data(), data_.data() + offset, count * 4);
    return values;
  }

private:
  std::string where_;
  const std::string &data_;
};

ElementType readElementType(const EntryReader &r, const std::string &name) {
  if (std::optional<ElementType> type = parseElementType(name))
    return *type;
  r.fail("\"spec.element_type\" is \"" + name + "\", expected " + elementTypeChoices());
}

/// The schedule of an entry, one key per row of the field table. A field
/// that packages written before it existed lack may be absent: it keeps its
/// default and `*complete` is false (the recorded signature cannot be
/// checked then; the entry points and launch data are recorded).
Schedule readSchedule(const EntryReader &r, const json &j, bool *complete) {
  const ScheduleTable<Schedule> &table = scheduleFields();
  FieldValues values = fieldValues(table, Schedule{});
  *complete = true;
  size_t i = 0;
  for (const ScheduleField<Schedule> &f : table.fields) {
    const std::string path = std::string("schedule.") + f.irKey;
    if (f.has(kOptionalInPackage) && !(j.is_object() && j.contains(f.irKey)))
      *complete = false;
    else if (f.kind == FieldKind::Flag)
      values[i] = r.get<bool>(j, f.irKey, path.c_str());
    else if (f.kind == FieldKind::Int)
      values[i] = r.get<int>(j, f.irKey, path.c_str());
    else
      std::tie(values[i], values[i + 1]) = r.pair(j, f.irKey, path.c_str());
    i += f.components();
  }
  // Each value fits an int (read as one); KernelSpec::validate() checks the rest.
  return scheduleFromValues(table, values);
}

KernelSpec readSpec(const EntryReader &r, const json &entry, bool *completeSchedule) {
  const json &s = r.at(entry, "spec", "spec");
  KernelSpec spec;
  spec.channels = r.get<int64_t>(s, "channels", "spec.channels");
  spec.height = r.get<int64_t>(s, "height", "spec.height");
  spec.width = r.get<int64_t>(s, "width", "spec.width");
  spec.elementType = readElementType(r, r.get<std::string>(s, "element_type", "spec.element_type"));
  spec.perBranchOutputs = r.get<bool>(s, "per_branch_outputs", "spec.per_branch_outputs");
  spec.hasBias = r.get<bool>(s, "has_bias", "spec.has_bias");
  spec.denseWeightGrad = r.get<bool>(s, "dense_weight_grad", "spec.dense_weight_grad");
  const json &branches = r.at(s, "branches", "spec.branches");
  if (!branches.is_array() || branches.empty())
    r.fail("\"spec.branches\" is " + branches.dump() + ", expected a non-empty array");
  for (const json &b : branches) {
    Branch branch;
    std::tie(branch.kernelH, branch.kernelW) = r.pair(b, "kernel", "spec.branches[].kernel");
    std::tie(branch.padH, branch.padW) = r.pair(b, "padding", "spec.branches[].padding");
    const std::string form = r.get<std::string>(b, "form", "spec.branches[].form");
    if (form != "dense" && form != "table")
      r.fail("\"spec.branches[].form\" is \"" + form + "\", expected \"dense\" or \"table\"");
    branch.dense = form == "dense";
    spec.branches.push_back(branch);
  }

  spec.schedule = readSchedule(r, r.at(entry, "schedule", "schedule"), completeSchedule);
  if (std::string err = spec.validate(); !err.empty())
    r.fail("invalid spec: " + err);
  return spec;
}

TapTable readTapTable(const EntryReader &r, const json &ref, const KernelSpec &spec) {
  TapTable table;
  table.channels = spec.channels;
  table.numBranches = static_cast<int>(spec.branches.size());
  table.offsets = r.blob<int32_t>(r.at(ref, "offsets", "tap_table.offsets"), "tap_table.offsets");
  table.taps = r.blob<int32_t>(r.at(ref, "taps", "tap_table.taps"), "tap_table.taps");
  const size_t expected = static_cast<size_t>(table.numBranches * spec.channels + 1);
  if (table.offsets.size() != expected)
    r.fail("tap table has " + std::to_string(table.offsets.size()) + " offsets, expected " +
           std::to_string(expected) + " (branches * channels + 1)");
  if (table.offsets.front() != 0 || table.offsets.back() != static_cast<int32_t>(table.taps.size()))
    r.fail("tap table offsets run from " + std::to_string(table.offsets.front()) + " to " +
           std::to_string(table.offsets.back()) + ", expected 0 to " +
           std::to_string(table.taps.size()) + " (the number of taps)");
  // All offsets first: with 0 at the front, the tap count at the back and
  // no decrease, every channel's range lies inside the taps. (Checked per
  // channel while walking the taps, an offset past the end was read first.)
  for (int b = 0; b < table.numBranches; ++b)
    for (int64_t c = 0; c < spec.channels; ++c)
      if (table.end(b, c) < table.begin(b, c))
        r.fail("tap table offsets decrease at branch " + std::to_string(b) + " channel " +
               std::to_string(c));
  for (int b = 0; b < table.numBranches; ++b) {
    const Branch &branch = spec.branches[b];
    for (int64_t c = 0; c < spec.channels; ++c) {
      for (int64_t k = table.begin(b, c); k < table.end(b, c); ++k) {
        const int u = TapTable::unpackRow(table.taps[k]), v = TapTable::unpackCol(table.taps[k]);
        if (u < 0 || u >= branch.kernelH || v < 0 || v >= branch.kernelW)
          r.fail("tap (" + std::to_string(u) + ", " + std::to_string(v) + ") of branch " +
                 std::to_string(b) + " channel " + std::to_string(c) + " lies outside its " +
                 std::to_string(branch.kernelH) + "x" + std::to_string(branch.kernelW) + " window");
      }
    }
  }
  return table;
}

/// The sizes and checksums the writer recorded ("checksums", absent in
/// older packages): a package whose files were cut short, partly copied or
/// mixed with another package's is refused, not loaded.
void checkFiles(const json &manifest, const fs::path &root, const std::string &where,
                const std::string &dir) {
  if (!manifest.contains("checksums"))
    return;
  const json &sums = manifest["checksums"];
  if (!sums.is_object())
    throw std::runtime_error(where + ": \"checksums\" is " + sums.dump() + ", expected an object");
  const std::string fix = ": rebuild it (slak-translate --emit-kernel-package) or copy the whole "
                          "folder again";
  for (const auto &[name, sum] : sums.items()) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw std::runtime_error(where + ": \"checksums\" names \"" + name +
                               "\", which is not a file name");
    if (!sum.is_object() || !sum.contains("bytes") || !sum["bytes"].is_number_unsigned() ||
        !sum.contains("fnv1a64") || !sum["fnv1a64"].is_string())
      throw std::runtime_error(where + ": \"checksums\"." + name + " is " + sum.dump() +
                               ", expected {\"bytes\": N, \"fnv1a64\": \"16 hex digits\"}");
    const std::optional<std::string> bytes = readFile(root / name);
    if (!bytes)
      throw std::runtime_error("kernel package " + dir + " is incomplete: " + name +
                               " is missing, the manifest lists it" + fix);
    const uint64_t expected = sum["bytes"].get<uint64_t>();
    if (bytes->size() != expected)
      throw std::runtime_error("kernel package " + dir + " is damaged: " + name + " has " +
                               std::to_string(bytes->size()) + " bytes, the manifest says " +
                               std::to_string(expected) + " (cut short or from another package)" +
                               fix);
    if (hex64(fnv1a64(*bytes)) != sum["fnv1a64"].get<std::string>())
      throw std::runtime_error("kernel package " + dir + " is damaged: " + name +
                               " does not match its checksum in the manifest (modified, or from "
                               "another package)" +
                               fix);
  }
}

} // namespace

const PackagedOp *KernelPackage::find(const std::string &name) const {
  for (const PackagedOp &op : ops)
    if (op.name == name)
      return &op;
  return nullptr;
}

KernelPackage readKernelPackage(const std::string &dir) {
  const fs::path root(dir);
  const fs::path manifestPath = root / "manifest.json";
  std::optional<std::string> text = readFile(manifestPath);
  if (!text)
    throw std::runtime_error("cannot read " + manifestPath.string() + ": no such file (is " + dir +
                             " a kernel package written by slak-translate --emit-kernel-package?)");
  json manifest;
  try {
    manifest = json::parse(*text);
  } catch (const json::exception &e) {
    throw std::runtime_error(manifestPath.string() + " is not valid JSON: " + e.what());
  }
  const std::string where = manifestPath.string();
  // Typed checks before value(): it throws json::type_error (not the
  // runtime_error this function promises) for a key of another type.
  auto textOf = [&](const char *key) {
    return manifest.contains(key) && manifest[key].is_string() ? manifest[key].get<std::string>()
                                                               : std::string();
  };
  if (!manifest.is_object() || textOf("format") != "slak-kernel-package")
    throw std::runtime_error(where + ": \"format\" is not \"slak-kernel-package\"");
  KernelPackage package;
  package.directory = dir;
  const json version = manifest.value("version", json(0));
  package.version = integerAs<int>(version).value_or(0);
  if (package.version != kKernelPackageVersion)
    throw std::runtime_error(
        where + ": package version " + version.dump() + ", this reader understands version " +
        std::to_string(kKernelPackageVersion) + "; regenerate it with this slak-translate");
  package.generator = textOf("generator");
  const json files = manifest.value("files", json::object());
  auto fileName = [&](const char *key, const char *fallback) {
    return files.contains(key) && files[key].is_string() ? files[key].get<std::string>()
                                                         : std::string(fallback);
  };
  package.cudaSource = readFile(root / fileName("cuda", "kernels.cu")).value_or("");
  package.openclSource = readFile(root / fileName("opencl", "kernels.cl")).value_or("");
  const fs::path dataPath = root / fileName("data", "data.bin");
  const std::string data = readFile(dataPath).value_or("");

  if (!manifest.contains("ops") || !manifest["ops"].is_array())
    throw std::runtime_error(where + ": \"ops\" is missing or not an array");
  size_t index = 0;
  for (const json &entry : manifest["ops"]) {
    const std::string name =
        entry.is_object() && entry.contains("name") && entry["name"].is_string()
            ? entry["name"].get<std::string>()
            : "#" + std::to_string(index);
    ++index;
    EntryReader r(where + ": op '" + name + "'", data);
    PackagedOp op;
    op.name = name;
    bool completeSchedule = false;
    KernelSpec spec = readSpec(r, entry, &completeSchedule);
    const std::string recorded = r.get<std::string>(entry, "signature", "signature");
    if (completeSchedule && spec.signature() != recorded)
      r.fail("the recorded signature \"" + recorded + "\" does not match its spec (\"" +
             spec.signature() + "\")");
    op.scheduleOrigin =
        r.get<std::string>(r.at(entry, "schedule", "schedule"), "origin", "schedule.origin");

    EmittedKernels &k = op.kernels;
    k.spec = spec;
    const json &entries = r.at(entry, "entry_points", "entry_points");
    const json &launch = r.at(entry, "launch", "launch");
    for (int i = 0; i < kNumKernelKinds; ++i) {
      const char *kind = kernelKindName(static_cast<KernelKind>(i));
      k.names[i] = r.get<std::string>(entries, kind, "entry_points.<kind>");
      const json &l = r.at(launch, kind, "launch.<kind>");
      k.threads[i] = r.get<int>(l, "threads", "launch.<kind>.threads");
      k.sharedBytes[i] = r.get<int64_t>(l, "shared_bytes", "launch.<kind>.shared_bytes");
      if (k.threads[i] <= 0 || k.threads[i] > 1024)
        r.fail(std::string("launch.") + kind + ".threads is " + std::to_string(k.threads[i]) +
               ", expected 1..1024");
      for (const std::string *source : {&package.cudaSource, &package.openclSource})
        if (!source->empty() && source->find(k.names[i] + "(") == std::string::npos)
          r.fail("entry point " + k.names[i] + " is missing from " +
                 (source == &package.cudaSource ? fileName("cuda", "kernels.cu")
                                                : fileName("opencl", "kernels.cl")));
    }

    const json &table = r.at(entry, "tap_table", "tap_table");
    if (!table.is_null()) // null: built at run time from live masks
      op.table = readTapTable(r, table, spec);

    const json &weights = r.at(entry, "weights", "weights");
    if (!weights.is_array() || (!weights.empty() && weights.size() != spec.branches.size()))
      r.fail("\"weights\" is " + weights.dump() + ", expected [] or one entry per branch (" +
             std::to_string(spec.branches.size()) + ")");
    for (size_t b = 0; b < weights.size(); ++b) {
      const std::string path = "weights[" + std::to_string(b) + "]";
      std::vector<float> w =
          weights[b].is_null() ? std::vector<float>() : r.blob<float>(weights[b], path);
      const int64_t expected = spec.channels * spec.branches[b].windowSize();
      if (!w.empty() && static_cast<int64_t>(w.size()) != expected)
        r.fail(path + " has " + std::to_string(w.size()) + " values, expected " +
               std::to_string(expected) + " (C * KH * KW)");
      op.weights.push_back(std::move(w));
    }
    const json &bias = r.at(entry, "bias", "bias");
    if (!bias.is_null()) {
      op.bias = r.blob<float>(bias, "bias");
      if (!op.bias.empty() && static_cast<int64_t>(op.bias.size()) != spec.channels)
        r.fail("bias has " + std::to_string(op.bias.size()) + " values, expected " +
               std::to_string(spec.channels) + " (one per channel)");
    }
    package.ops.push_back(std::move(op));
  }
  checkFiles(manifest, root, where, dir);
  return package;
}

} // namespace slak::codegen
