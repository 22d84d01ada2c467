"""pytest setup for the Python package's tests: ctest passes PYTHONPATH and
SLAK_RUNTIME_LIBRARY for this build; run by hand, the checkout's python/ and
build/ are used."""
import os
import sys

import torch

_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(_root, "python") not in sys.path:
    sys.path.insert(0, os.path.join(_root, "python"))
build = os.environ.get("SLAK_BUILD_DIR", os.path.join(_root, "build"))
if os.path.join(build, "python") not in sys.path:
    sys.path.insert(0, os.path.join(build, "python"))
os.environ.setdefault("SLAK_CACHE_DIR", os.path.join(build, "test-kernel-cache"))
torch.set_num_threads(1)
