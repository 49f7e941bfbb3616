"""Process-wide settings of the numerical libraries, applied by entry points only.

Nothing here runs at import: the ``meanfield`` command (:mod:`cli.main`) and the benchmark
scripts call :func:`set_thread_policy` first thing, before NumPy or Numba load their thread
pools. A library user who imports :mod:`meanfield` keeps their own environment.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: environment variables read by OpenBLAS and Numba's OpenMP layer when they load: idle threads
#: of the two pools sleep instead of spinning against each other on a few cores
THREAD_POLICY = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


def set_thread_policy(environ: MutableMapping[str, str] | None = None) -> None:
    """Set :data:`THREAD_POLICY` in ``environ`` (default ``os.environ``) where not already set.

    Must run before NumPy (OpenBLAS) and Numba are imported to have any effect.

    Example:
        >>> env = {}
        >>> set_thread_policy(env)
        >>> env["OMP_WAIT_POLICY"]
        'PASSIVE'
    """
    environ = os.environ if environ is None else environ
    for key, value in THREAD_POLICY.items():
        environ.setdefault(key, value)
