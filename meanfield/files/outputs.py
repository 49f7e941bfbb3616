"""Results are never overwritten by accident: what an existing output file holds, and whether a
command may write over it.

Every command that writes a result file asks :func:`existing_result` first:

- no file at the path: write it;
- a complete meanfield file of the same kind and the same *identity* (the run hash of its
  configuration, :func:`meanfield.config.run_hash`; for a comparison the hash of its inputs,
  :func:`comparison_identity`): it already holds this result, so the command leaves it untouched
  and reports from it (a rerun is free);
- anything else (another configuration, another kind, an incomplete or unreadable file): a
  :class:`~meanfield.config.ConfigError` naming the difference, unless ``overwrite`` is given;
  the file is then replaced atomically, so the old one stays whole until the new one is complete.

Figures (:func:`check_figure`) carry the inputs hash of their comparison in their metadata: a
figure of the same comparison is redrawn (identically), any other file is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from meanfield.config import (
    FIELD_NAMES,
    RUN_HASH_EXCLUDED,
    Config,
    ConfigError,
    from_json,
    run_hash,
)
from meanfield.io import NotMeanfieldFile, open_meanfield, read_config_json, text_attr

_HINT = "use --overwrite to replace it, or write to another file"
#: written into every figure's metadata (PNG text chunk, PDF Keywords) by
#: :mod:`meanfield.plots`, followed by the comparison's inputs hash, so that a rerun can tell
#: its own figure from another file
FIGURE_TAG = "meanfield inputs_hash="


def comparison_identity(sim_config: Config, theory_config: Config | None,
                        on_schedule: bool) -> str:
    """What determines a comparison's numbers: the run hashes of the simulation and of the
    theory file (``None``: the theory computed for the simulation) and the schedule option."""
    inputs = {"simulation": run_hash(sim_config),
              "theory": "computed" if theory_config is None else run_hash(theory_config),
              "on_schedule": bool(on_schedule)}
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _differences(theirs: Config, ours: Config) -> str:
    """``M: 400 there, 200 here; seed: 0 there, 3 here`` over the fields that change numbers."""
    out = [f"{k}: {getattr(theirs, k)} there, {getattr(ours, k)} here" for k in FIELD_NAMES
           if k not in RUN_HASH_EXCLUDED and getattr(theirs, k) != getattr(ours, k)]
    return "; ".join(out[:4]) + ("; ..." if len(out) > 4 else "")


def _complete(path: Path, kind: str) -> None:
    """Read the whole file with its kind's reader (every dataset, checksums included)."""
    if kind == "simulation":
        from meanfield.files.simulation import read_simulation

        read_simulation(path)
    elif kind == "theory":
        from meanfield.files.theory import read_theory

        read_theory(path)
    elif kind == "linear":
        from meanfield.files.linear import read_linear

        read_linear(path)
    elif kind == "crossover":
        from meanfield.files.crossover import read_crossover

        read_crossover(path)
    else:
        from meanfield.files.comparison import read_comparison

        read_comparison(path)


def _held(path: Path, kind: str) -> tuple[str, Config | None]:
    """The identity of the result in ``path`` and, for runs, its configuration."""
    _complete(path, kind)
    with open_meanfield(path, kind) as f:
        if kind in ("comparison", "crossover"):
            return str(text_attr(f, "inputs_hash", "")), None
        if kind == "linear":
            from meanfield.linear_config import linear_config_from_json

            return linear_config_from_json(read_config_json(f)).hash(), None
        config = from_json(read_config_json(f))
    return run_hash(config), config


def existing_result(path: str | Path, kind: str, identity: str, overwrite: bool = False,
                    config: Config | None = None) -> bool:
    """Whether ``path`` already holds the result of ``kind`` with ``identity`` (then the caller
    leaves it untouched and reports from it).

    Args:
        path: the output file.
        kind: ``simulation``, ``theory``, ``comparison``, ``linear`` or ``crossover``.
        identity: the run hash of ``config`` (a comparison: :func:`comparison_identity`; a
            linear run: :meth:`meanfield.linear_config.LinearConfig.hash`; a crossover:
            :func:`meanfield.files.crossover.crossover_identity`).
        overwrite: allow replacing a file that holds something else.
        config: this run's configuration, to name the fields that differ.

    Returns:
        True when the file holds this very result; False when the caller should write it.

    Raises:
        ConfigError: the file holds something else (another configuration, another kind, an
            incomplete or unreadable file) and ``overwrite`` is false.
    """
    path = Path(path)
    if not path.exists():
        return False
    try:
        held, theirs = _held(path, kind)
    except (NotMeanfieldFile, ConfigError, OSError, KeyError) as err:
        if overwrite:
            return False
        raise ConfigError(f"{path} exists and is not a complete meanfield {kind} file "
                          f"({err}); {_HINT}") from None
    if held == identity:
        return True
    if overwrite:
        return False
    what = ("other inputs" if kind in ("comparison", "crossover") or theirs is None
            or config is None
            else f"another configuration ({_differences(theirs, config)})")
    raise ConfigError(f"{path} already holds a {kind} of {what}; {_HINT}")


def tagged_identity(path: str | Path, tag: str = FIGURE_TAG) -> str | None:
    """The 12-character identity written after ``tag`` into a file (a figure's metadata, a
    derivation document); ``None`` when the file carries no such tag."""
    data = Path(path).read_bytes()
    at = data.find(tag.encode())
    if at < 0:
        return None
    start = at + len(tag)
    return data[start:start + 12].decode("ascii", errors="replace")


def existing_tagged(path: str | Path, identity: str, overwrite: bool = False,
                    tag: str = FIGURE_TAG) -> bool:
    """Whether the file at ``path`` already holds the output tagged ``identity`` (a figure of
    the same comparison, a derivation of the same request); :class:`ConfigError` when it
    holds anything else, unless ``overwrite``."""
    path = Path(path)
    if not path.exists():
        return False
    if tagged_identity(path, tag) == identity:
        return True
    if overwrite:
        return False
    raise ConfigError(f"{path} exists and holds another result; {_HINT}")


def check_figure(path: str | Path, identity: str, overwrite: bool = False) -> None:
    """Refuse (:class:`ConfigError`) to draw over an existing file at ``path`` that is not a
    figure of the comparison ``identity``, unless ``overwrite`` (a figure of the same
    comparison is redrawn, identically)."""
    existing_tagged(path, identity, overwrite)
