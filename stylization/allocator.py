"""glibc's malloc tuned for PyTorch on the CPU: every entry point calls :func:`tune_allocator`.

By default glibc serves each block above a dynamic threshold (128 KiB at first, up to 32 MiB) with
its own ``mmap`` and gives it back with ``munmap`` when freed. A CPU training or rendering step
allocates and frees the same multi-megabyte activations hundreds of times, so every step pays for
fresh zeroed pages (page faults) again. Keeping those blocks in the heap instead
(``M_MMAP_MAX = 0``: no ``mmap`` for allocations; ``M_TRIM_THRESHOLD`` raised: freed memory stays
with the process for reuse) measured, on the 2-core machine of docs/results.md, Style-A's CPU
recipe 14-18 % faster per step, identical losses, peak memory 2.11 -> 2.38 GB; for the official
StyleGAN2/VToonify-D code at 1024 px the same change is worth 1.3-3x (issue 20's measurements).

The price is that memory freed by Python is not returned to the system until the process ends;
peak memory is unchanged. ``STYLIZATION_MALLOC=default`` in the environment keeps glibc's
behaviour. On a C library without ``mallopt`` (musl, macOS) nothing changes. Forked DataLoader
workers inherit the setting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc's malloc.h parameter numbers
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: trim only when 2 GiB sit free at the heap top
ENV = "STYLIZATION_MALLOC"

_done: bool | None = None


def tune_allocator() -> bool:
    """Keep large CPU blocks in glibc's heap (see the module docstring). Returns whether the
    setting is in effect; idempotent, and a no-op with ``STYLIZATION_MALLOC=default``."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get(ENV, "").strip().lower() == "default":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _done = ok
    return ok
