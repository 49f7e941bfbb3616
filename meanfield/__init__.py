"""meanfield: numerics for the mean-field theory of two-layer networks.

Data path: config -> ``analytic`` (derive once) -> ``meanfield.simulate`` / ``meanfield.theory``
-> HDF5 (``meanfield.io``) -> ``meanfield.compare`` -> report and plots.
"""

from meanfield.io import package_version

__version__ = package_version()
