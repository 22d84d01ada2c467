# lit configuration for the slak IR tests (FileCheck, -verify-diagnostics).
# Run through ctest, or by hand:
#   lit --param slak_site_config=build/tests/lit/lit.site.cfg.py tests/lit
import os

import lit.formats
import lit.util

site_config = lit_config.params.get("slak_site_config")
if not site_config:
    lit_config.fatal(
        "slak_site_config is not set: run `ctest -L lit` in the build tree or pass "
        "--param slak_site_config=build/tests/lit/lit.site.cfg.py"
    )
lit_config.load_config(config, site_config)

config.name = "slak"
config.test_format = lit.formats.ShTest(lit.util.which("bash") is not None)
config.suffixes = [".mlir"]
config.excludes = ["Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.slak_binary_dir, "tests", "lit")

# Our tools first, then FileCheck, not, count, split-file from LLVM.
config.environment["PATH"] = os.pathsep.join(
    [config.slak_tools_dir, config.llvm_tools_dir, os.environ.get("PATH", "")]
)
config.substitutions.append(("%slak_src", config.slak_source_dir))

# Tests of the CPU (Halide) backend: `// REQUIRES: slak-halide`.
if getattr(config, "slak_with_halide", "").upper() in ("ON", "TRUE", "1", "YES"):
    config.available_features.add("slak-halide")
