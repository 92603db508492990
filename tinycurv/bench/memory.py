"""Host memory for the benchmarks: keep freed blocks for reuse (glibc's ``mallopt``).

Host-side, like every module of ``tinycurv.bench``. ``tinycurv.backend`` re-exports
``retain_freed_memory`` (``tinycurv bench … --retain-memory`` calls it from there).
"""

from __future__ import annotations


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Ask glibc's malloc to keep freed host memory for reuse (Linux; opt-in, process-wide).

    By default glibc returns large freed blocks to the system (``munmap``, heap trimming), so
    the next NumPy temporary of the same size pays page faults again. The engine's dual
    temporaries are such blocks: at width 400 the HVP of ``tinycurv bench engine`` costs 3.6×
    a gradient by the wall clock but 2.4× in CPU time. Serving blocks up to ``mmap_threshold``
    bytes from the heap and trimming it only above ``trim_threshold`` removes most of that
    (BENCHMARKS.md). The price: the process keeps up to ``trim_threshold`` of freed memory.
    Setting ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` in the environment before
    Python starts does the same.

    Returns
    -------
    bool
        Whether glibc accepted both settings (False on other C libraries and systems).
    """
    import ctypes  # here, not at import: tinycurv.backend re-exports this function
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
    return bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold))) and bool(
        mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))
    )
