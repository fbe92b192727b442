"""glibc malloc settings of the ``dra-framework run`` daemon (docs/operations.md, "Memory").

glibc gives threads that allocate at the same time arenas of their own (up to 8 per core), and
each arena keeps freed memory resident for its own later use. The daemon's worker threads (the
start-up imports, slow file writes) allocate little and mostly under the GIL, so one
arena for the whole process costs no measurable latency and saves resident memory
(benchmarks/README.md, "What was optimised"). Nothing happens where the C library is not glibc
(musl, macOS). https://man7.org/linux/man-pages/man3/mallopt.3.html
"""
from __future__ import annotations

import ctypes

_M_ARENA_MAX = -8  # glibc <malloc.h>


def one_malloc_arena() -> bool:
    """``mallopt(M_ARENA_MAX, 1)``: every thread allocates from the main arena. Call it before
    the first thread starts (arenas made before stay). Returns whether the C library took it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_ARENA_MAX, 1) == 1)
