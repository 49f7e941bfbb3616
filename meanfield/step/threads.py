"""Thread pools of the step: Numba's and the BLAS one, set together and reported together."""

from __future__ import annotations

import os
from typing import Any

import numba


def set_threads(threads: int) -> int:
    """Set both thread pools (Numba's and the BLAS one, via threadpoolctl) to ``threads``
    (0 = all cores, capped by Numba's maximum). Process-wide; SciPy's own BLAS is loaded first
    so that it is limited too. Returns the count used."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, if it has its own)
    from threadpoolctl import threadpool_limits

    n = numba.config.NUMBA_NUM_THREADS if threads <= 0 else min(threads,
                                                                 numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")
    return n


def thread_settings() -> dict[str, Any]:
    """The thread settings in force, for the output file: Numba's thread count and threading
    layer, every BLAS pool that threadpoolctl sees (library, kernel, threads), and the waiting
    policy environment variables."""
    from threadpoolctl import threadpool_info

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = "not yet chosen"
    return {
        "numba_threads": int(numba.get_num_threads()),
        "numba_threading_layer": layer,
        "blas": [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                   "threading_layer")}
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ],
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", ""),
        "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT", ""),
    }
