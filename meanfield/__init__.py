"""meanfield: numerics for the mean-field theory of two-layer networks.

Data path: config -> ``analytic`` (derive once) -> ``meanfield.simulate`` / ``meanfield.theory``
-> HDF5 (``meanfield.io``) -> ``meanfield.compare`` -> report and plots.
"""

import os

# Idle threads of the two pools (OpenBLAS, Numba's OpenMP layer) sleep instead of spinning
# against each other on a few cores; must be set before numpy / numba load their libraries.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from meanfield.io import package_version

__version__ = package_version()
