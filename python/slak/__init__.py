"""slak: sparse large-kernel depthwise convolutions for PyTorch.

The op and the modules run the project's C++ runtime (libslak_runtime.so,
loaded on import): generated kernels that fuse SLaK's M x N + N x M + small
branches, skip masked taps, and run on the CPU (Halide) or a CUDA GPU.

    import slak
    y = slak.ops.lk_conv(x, [w_51x5, w_5x51, w_5x5], masks=[m1, m2, None])
    layer = slak.nn.ReparamLargeKernelConv(124, 124, 51, groups=124, small_kernel=5)
    replaced = slak.convert_(model)  # official SLaK modules -> slak modules
"""
from . import _library

_library.load()

from . import _meta  # noqa: E402  (fake kernels need the op schemas loaded)
from . import nn, ops  # noqa: E402
from .convert import convert_  # noqa: E402
from .nn import sparsify_  # noqa: E402

__all__ = ["ops", "nn", "convert_", "sparsify_", "library_path"]


def library_path():
    """The libslak_runtime.so this process loaded."""
    return _library.loaded_path()
