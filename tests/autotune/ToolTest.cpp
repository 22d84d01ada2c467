// slak-autotune end to end: --help documents every flag, a model-only run
// for a named GPU prints the ranked candidates and stores its pick, and the
// errors (unknown GPU, no local GPU, corrupt database) are clear.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>
#include <vector>

#include "autotune/Lookup.h"
#include "autotune/TuningDatabase.h"
#include "autotune/Workload.h"
#include "tests/autotune/AutotuneTestLayers.h"

#ifndef SLAK_AUTOTUNE_TOOL
#define SLAK_AUTOTUNE_TOOL "slak-autotune"
#endif

namespace slak::autotune {
namespace {

struct ToolRun {
  int status = -1;
  std::string output; // stdout and stderr
};

ToolRun run(const std::string &args) {
  ToolRun r;
  const std::string command = std::string(SLAK_AUTOTUNE_TOOL) + " " + args + " 2>&1";
  FILE *pipe = popen(command.c_str(), "r");
  if (!pipe)
    return r;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe))
    r.output.append(buffer, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string tempPath(const std::string &name) { return tempDatabasePath("slak_tool", name); }

TEST(ToolTest, HelpDocumentsEveryFlag) {
  const ToolRun r = run("--help");
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char *flag : {"--gpu",
                           "--cpu",
                           "--layer",
                           "--slak-t",
                           "--density",
                           "--batch",
                           "--kinds",
                           "--db",
                           "--no-db",
                           "--replace",
                           "--top",
                           "--measure-top",
                           "--exhaustive-limit",
                           "--evaluate-model",
                           "--model-only",
                           "--repeats",
                           "--warmup",
                           "--threads",
                           "--clock",
                           "--verify",
                           "--quiet",
                           "--list-gpus",
                           "--mode",
                           "--output",
                           "--report-model-vs-measured"})
    EXPECT_NE(r.output.find(flag), std::string::npos) << flag << " missing from --help";
  EXPECT_NE(r.output.find("a100"), std::string::npos);
}

TEST(ToolTest, ModelOnlyRunPrintsRankingAndStoresThePick) {
  const std::string db = tempPath("tool.db");
  const std::string layer = "channels=124,size=56,branches=51x5+5x51+5x5,density=0.6,batch=8";
  const ToolRun r = run("--gpu a100 --layer " + layer + " --db " + db + " --top 3");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("conv part:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("weight part:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("chosen (model):"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(default)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("conv space ["), std::string::npos) << "no progress on stderr";
  EXPECT_NE(r.output.find("stored in " + db), std::string::npos) << r.output;
  TuningDatabase opened(db, TuningDatabase::Access::ReadOnly);
  const LayerDescription l = parseLayer(layer);
  const ScheduleChoice c = lookupSchedule(&opened, l.spec, "a100", 0.6);
  EXPECT_EQ(c.origin, ScheduleOrigin::Model);
  EXPECT_NE(r.output.find(c.schedule.str()), std::string::npos);
}

TEST(ToolTest, ClearErrors) {
  const std::string bad = tempPath("bad.db");
  std::ofstream(bad) << "this is not a database, it is a shopping list\n";
  struct Case {
    std::string args;
    int status;
    std::vector<std::string> says;
  };
  const Case cases[] = {
      {"--gpu gtx480 --layer channels=8 --no-db", 1, {"unknown GPU 'gtx480'", "h100"}},
      // The runtime's CUDA timer is registered; this machine has no GPU.
      {"--gpu local --layer channels=8 --no-db", 1, {"no CUDA device"}},
      {"--gpu a100 --layer channels=8 --no-db --report-model-vs-measured",
       2,
       {"--report-model-vs-measured compares with measurements"}},
      {"--gpu a100 --layer channels=8 --no-db -o tuned.mlir", 2, {"-o is for the model form"}},
      {"--gpu a100 --layer channels=8,colour=red --no-db", 1, {"unknown key 'colour'"}},
      {"--layer channels=8", 2, {"--gpu"}},
      {"--gpu a100 --layer channels=8,size=14,branches=5x5 --db " + bad,
       1,
       {bad, "not an SQLite file"}},
  };
  for (const Case &c : cases) {
    const ToolRun r = run(c.args);
    EXPECT_EQ(r.status, c.status) << c.args << "\n" << r.output;
    for (const std::string &part : c.says)
      EXPECT_NE(r.output.find(part), std::string::npos) << c.args << "\n" << r.output;
  }
}

TEST(ToolTest, ListsTheGpuTable) {
  const ToolRun r = run("--list-gpus");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("rtx4090"), std::string::npos);
  EXPECT_NE(r.output.find("whitepaper"), std::string::npos);
}

#ifdef SLAK_AUTOTUNE_WITH_CPU
TEST(ToolTest, ReportsModelAgainstMeasurementsOnTheCpu) {
  const ToolRun r = run("--cpu --layer channels=4,size=12,branches=5x5 --kinds forward --no-db "
                        "--threads 1 --report-model-vs-measured --exhaustive-limit 0 "
                        "--repeats 1 --warmup 0 --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("model vs measured on cpu:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Kendall tau"), std::string::npos) << r.output;
  // At least the model's top 10 were measured.
  const size_t at = r.output.find("over the model's top ");
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_EQ(std::stoi(r.output.substr(at + 21)), 10) << r.output;
  EXPECT_NE(r.output.find("pick is "), std::string::npos) << r.output;
}
#endif

} // namespace
} // namespace slak::autotune
