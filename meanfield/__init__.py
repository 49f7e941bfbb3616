"""meanfield: numerics for the mean-field theory of two-layer networks.

Data path: config -> ``analytic`` (derive once) -> ``meanfield.simulate`` / ``meanfield.theory``
-> HDF5 (``meanfield.files``) -> ``meanfield.compare`` -> report and plots.

Importing the package has no side effects: thread settings are made by the entry points
(:func:`meanfield.runtime.set_thread_policy`).
"""

from importlib import metadata


def _version() -> str:
    try:
        return metadata.version("meanfield")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


__version__ = _version()
