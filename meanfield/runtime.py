"""Process-wide settings of the numerical libraries, applied by entry points only.

Nothing here runs at import: the ``meanfield`` command (:mod:`cli.main`) and the benchmark
scripts call :func:`set_thread_policy` first thing, before NumPy or Numba load their thread
pools, and the command calls :func:`ignore_file_size_signal` and
:func:`terminate_as_interrupt`. A library user who imports
:mod:`meanfield` keeps their own environment and signal handlers.
"""

from __future__ import annotations

import os
import signal
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


def ignore_file_size_signal() -> None:
    """Ignore ``SIGXFSZ``: a write past the file-size limit (``ulimit -f``, a full quota) then
    fails with ``EFBIG``, which the atomic writers turn into an error that leaves the previous
    file intact, instead of the signal killing the process inside the HDF5 library."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def terminate_as_interrupt() -> None:
    """Make ``SIGTERM`` (a batch system's stop, ``kill``) end the command as Ctrl-C does: a
    ``KeyboardInterrupt`` that unwinds the atomic writers (no half-written file, no ``.tmp``)
    and reports one line. Commands that checkpoint install their own handler on top."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
