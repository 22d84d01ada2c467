// slak-translate writing kernel packages, killed with SIGKILL at random
// moments, and the package reader on what is left; the kernel cache's sweep
// of temporary files that killed writers leave.
//
// The writer fills <dir>.tmp-<pid>-<n> and renames it over <dir> (exchanging
// it with an older package), so after any kill <dir> must hold exactly the old
// package or the new one, byte for byte, or nothing before the first complete
// write; the reader loads it or refuses with one line. Half-written packages
// made by hand (a missing, cut-short or foreign file) are refused by the
// reader, naming the file.
#include "codegen/package/KernelPackage.h"
#include "runtime/Files.h"
#include "runtime/KernelCache.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utime.h>

extern char **environ;

namespace {

using slak::runtime::joinPath;
using slak::runtime::removeTree;

using Files = std::map<std::string, std::string>;

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::vector<std::string> entries(const std::string &dir) {
  std::vector<std::string> names;
  if (DIR *d = ::opendir(dir.c_str())) {
    while (const dirent *e = ::readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
        names.push_back(e->d_name);
    ::closedir(d);
  }
  return names;
}

/// Every file of a folder by name; `exists` says whether the folder is there.
Files folderFiles(const std::string &dir, bool *exists) {
  struct stat st;
  *exists = ::stat(dir.c_str(), &st) == 0;
  Files files;
  for (const std::string &name : entries(dir))
    files[name] = readFile(joinPath(dir, name));
  return files;
}

/// Starts `argv` with stdout and stderr into `log`.
pid_t start(const std::vector<std::string> &argv, const std::string &log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char *> args;
  for (const std::string &a : argv)
    args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

/// Waits; true when the process was killed by SIGKILL, false when it exited
/// (then `*status` is its exit code).
bool waitKilled(pid_t pid, int *status) {
  int raw = 0;
  while (::waitpid(pid, &raw, 0) < 0 && errno == EINTR) {
  }
  *status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return WIFSIGNALED(raw) && WTERMSIG(raw) == SIGKILL;
}

int runTool(const std::vector<std::string> &argv, const std::string &log) {
  const pid_t pid = start(argv, log);
  if (pid < 0)
    return -1;
  int status = 0;
  waitKilled(pid, &status);
  return status;
}

/// The reader's verdict: "" when it loads the package, else its message.
std::string readerError(const std::string &dir) {
  try {
    slak::codegen::readKernelPackage(dir);
  } catch (const std::exception &e) {
    return e.what();
  }
  return {};
}

class PackageKill : public ::testing::Test {
protected:
  void SetUp() override {
    work_ = joinPath(::testing::TempDir(), "slak_package_kill_" + std::to_string(::getpid()));
    removeTree(work_);
    ASSERT_EQ(slak::runtime::makeDirectories(work_), "");
    const char *translate = std::getenv("SLAK_DURABILITY_TRANSLATE"); // an older build, to compare
    translate_ = translate && *translate ? translate : SLAK_TRANSLATE_PATH;
    // Two different packages of the SLaK-T stage-1 layer: inference (BN
    // folded) and training (per-branch outputs).
    for (const char *mode : {"infer", "train"}) {
      const std::string mlir = joinPath(work_, std::string(mode) + ".mlir");
      ASSERT_EQ(runTool({SLAK_OPT_PATH, SLAK_SOURCE_DIR "/examples/slak_t_stage1.mlir",
                         std::string("--slak-pipeline=mode=") + mode, "-o", mlir},
                        joinPath(work_, "opt.log")),
                0)
          << readFile(joinPath(work_, "opt.log"));
      inputs_.push_back(mlir);
      const std::string ref = joinPath(work_, std::string("reference-") + mode);
      const auto t0 = std::chrono::steady_clock::now();
      ASSERT_EQ(runTool({translate_, "--emit-kernel-package", "-o", ref, mlir},
                        joinPath(work_, "translate.log")),
                0)
          << readFile(joinPath(work_, "translate.log"));
      seconds_ = std::max(
          seconds_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      bool exists = false;
      references_.push_back(folderFiles(ref, &exists));
      ASSERT_EQ(readerError(ref), "");
    }
    ASSERT_NE(references_[0], references_[1]);
  }
  void TearDown() override {
    if (!HasFailure())
      removeTree(work_);
  }

  std::string work_, translate_;
  std::vector<std::string> inputs_;
  std::vector<Files> references_;
  double seconds_ = 0; // the slower reference write
};

TEST_F(PackageKill, KilledWriterLeavesTheOldOrTheNewPackage) {
  const char *killsEnv = std::getenv("SLAK_DURABILITY_KILLS");
  const char *seedEnv = std::getenv("SLAK_DURABILITY_SEED");
  const int kills = killsEnv ? std::atoi(killsEnv) : 40;
  std::mt19937 rng(seedEnv ? std::atoi(seedEnv) : 23);
  const std::string pkg = joinPath(work_, "pkg");
  int killed = 0, finished = 0, absent = 0, old = 0, fresh = 0, stagingLeft = 0;
  int stagingComplete = 0, stagingRefused = 0, attempts = 0;
  int previous = -1; // which package is at pkg (-1: none yet)
  while (killed < kills) {
    ASSERT_LT(++attempts, 20 * kills) << "slak-translate always finished before the kill";
    // Each write replaces the other package, so old and new are told apart.
    const int next = previous < 0 ? attempts % 2 : 1 - previous;
    const pid_t pid = start({translate_, "--emit-kernel-package", "-o", pkg, inputs_[next]},
                            joinPath(work_, "kill.log"));
    ASSERT_GT(pid, 0);
    const double delay = std::uniform_real_distribution<double>(0.3, 1.3)(rng) * seconds_;
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    ::kill(pid, SIGKILL);
    int status = 0;
    const bool wasKilled = waitKilled(pid, &status);
    if (!wasKilled) {
      ASSERT_EQ(status, 0) << readFile(joinPath(work_, "kill.log"));
    }
    killed += wasKilled;
    finished += !wasKilled;

    bool exists = false;
    const Files now = folderFiles(pkg, &exists);
    const std::string error = readerError(pkg);
    if (!exists) {
      EXPECT_EQ(previous, -1) << "a complete package disappeared after kill " << killed;
      EXPECT_NE(error.find("manifest.json: no such file"), std::string::npos) << error;
      ++absent;
    } else if (now == references_[next]) {
      EXPECT_EQ(error, "");
      fresh += wasKilled;
    } else {
      ASSERT_EQ(now, references_[1 - next]) << "after kill " << killed << " " << pkg
                                            << " is neither package (a mix?); files: " << now.size()
                                            << "; reader: " << (error.empty() ? "loads it" : error);
      EXPECT_EQ(error, "");
      EXPECT_EQ(previous, 1 - next);
      ++old;
    }
    if (!wasKilled) {
      EXPECT_EQ(now, references_[next]);
    }
    if (exists && now == references_[next])
      previous = next;
    // What a kill leaves next to the package: a staging folder, complete
    // (manifest written last) or refused by the reader, never half-loaded.
    for (const std::string &name : entries(work_)) {
      if (name.rfind("pkg.tmp-", 0) != 0 && name.rfind("pkg.old-", 0) != 0)
        continue;
      ++stagingLeft;
      const std::string staged = joinPath(work_, name);
      const std::string err = readerError(staged);
      if (err.empty()) {
        bool e = false;
        const Files files = folderFiles(staged, &e);
        EXPECT_TRUE(files == references_[0] || files == references_[1]) << staged;
        ++stagingComplete;
      } else {
        EXPECT_EQ(err.find('\n'), std::string::npos) << err;
        ++stagingRefused;
      }
    }
  }
  // The next complete write removes what killed writers left.
  ASSERT_EQ(runTool({translate_, "--emit-kernel-package", "-o", pkg, inputs_[0]},
                    joinPath(work_, "last.log")),
            0);
  for (const std::string &name : entries(work_))
    EXPECT_TRUE(name.rfind("pkg.", 0) != 0) << name << " was left next to the package";
  std::printf(
      "slak-translate: %d kills in %d runs (%d finished first): after each, %s held the new "
      "package %d times, the old one %d times, nothing (before the first write) %d times, "
      "never a mix; %d staging folders left by kills (%d complete, %d refused by the "
      "reader), all removed by the next write\n",
      killed, attempts, finished, pkg.c_str(), fresh, old, absent, stagingLeft, stagingComplete,
      stagingRefused);
}

TEST_F(PackageKill, HalfWrittenPackagesAreRefused) {
  const Files &ref = references_[0], &other = references_[1];
  struct Case {
    const char *what;
    std::map<std::string, std::string> replace; // name -> bytes; "\x01" = remove
    const char *expected;
  };
  const std::string remove = "\x01";
  std::string flipped = ref.at("data.bin");
  flipped[flipped.size() / 2] ^= 0x40; // a weight's bits: only the checksum can tell
  const std::vector<Case> cases = {
      {"no manifest", {{"manifest.json", remove}}, "manifest.json: no such file"},
      {"no kernels.cl", {{"kernels.cl", remove}}, "is incomplete: kernels.cl is missing"},
      {"kernels.cu cut short",
       {{"kernels.cu", ref.at("kernels.cu").substr(0, 20000)}},
       "kernels.cu"},
      {"data.bin cut short", {{"data.bin", ref.at("data.bin").substr(0, 1000)}}, "data.bin"},
      {"another package's kernels.cu", {{"kernels.cu", other.at("kernels.cu")}}, "kernels.cu"},
      {"data.bin with one byte changed",
       {{"data.bin", flipped}},
       "data.bin does not match its checksum"},
      {"manifest cut short",
       {{"manifest.json", ref.at("manifest.json").substr(0, 700)}},
       "manifest.json is not valid JSON"},
  };
  for (const Case &c : cases) {
    const std::string dir = joinPath(work_, "half");
    removeTree(dir);
    ASSERT_EQ(slak::runtime::makeDirectories(dir), "");
    for (const auto &[name, bytes] : ref) {
      auto it = c.replace.find(name);
      if (it == c.replace.end())
        writeFile(joinPath(dir, name), bytes);
      else if (it->second != remove)
        writeFile(joinPath(dir, name), it->second);
    }
    const std::string error = readerError(dir);
    EXPECT_NE(error.find(c.expected), std::string::npos) << c.what << ": " << error;
    EXPECT_NE(error.find(dir), std::string::npos) << c.what << " names no folder: " << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << c.what << ": " << error;
    std::printf("%-30s %s\n", c.what, error.c_str());
  }
}

TEST_F(PackageKill, RefusesAFolderWithOtherFiles) {
  const std::string dir = joinPath(work_, "notes");
  ASSERT_EQ(slak::runtime::makeDirectories(dir), "");
  writeFile(joinPath(dir, "notes.txt"), "mine");
  const std::string log = joinPath(work_, "foreign.log");
  EXPECT_EQ(runTool({translate_, "--emit-kernel-package", "-o", dir, inputs_[0]}, log), 1);
  EXPECT_NE(readFile(log).find("holds 'notes.txt', which is not part of a kernel package"),
            std::string::npos)
      << readFile(log);
  EXPECT_EQ(readFile(joinPath(dir, "notes.txt")), "mine");
}

/// Temporary files of killed cache writers: removed once their process is
/// gone and they are 10 s old; a live writer's, and a fresh one, stay.
TEST(KernelCacheSweep, RemovesTemporariesOfDeadWriters) {
  const std::string dir =
      joinPath(::testing::TempDir(), "slak_cache_sweep_" + std::to_string(::getpid()));
  removeTree(dir);
  ASSERT_EQ(slak::runtime::makeDirectories(joinPath(dir, "opencl")), "");
  const pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  int status = 0;
  ::waitpid(dead, &status, 0);
  const std::string key(32, 'a');
  auto temp = [&](pid_t pid, const char *tag) {
    return joinPath(dir, "opencl/" + key + ".bin.tmp." + std::to_string(pid) + "." + tag + ".0");
  };
  auto age = [](const std::string &path, int seconds) {
    struct utimbuf t;
    t.actime = t.modtime = ::time(nullptr) - seconds;
    ::utime(path.c_str(), &t);
  };
  const std::string deadOld = temp(dead, "1"), deadNew = temp(dead, "2");
  const std::string liveOld = temp(::getpid(), "3");
  for (const std::string &p : {deadOld, deadNew, liveOld})
    writeFile(p, "partial");
  age(deadOld, 60);
  age(liveOld, 60);
  slak::runtime::KernelCache cache(dir);
  slak::runtime::CacheKey k;
  EXPECT_FALSE(cache.load("opencl", k)); // the first use of the folder sweeps it
  EXPECT_FALSE(slak::runtime::fileExists(deadOld));
  EXPECT_TRUE(slak::runtime::fileExists(deadNew));
  EXPECT_TRUE(slak::runtime::fileExists(liveOld));
  removeTree(dir);
}

} // namespace
