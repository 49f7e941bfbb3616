"""``meanfield linear``: a network next to its linearizations, to an HDF5 file."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import numpy as np

from cli.common import BadInput, memory_option, overwrite_option, reports_bad_input
from meanfield.linear_config import LINEAR_FIELDS, LinearConfig, field_meta

_TYPES = {"int": int, "float": float, "str": str}
_DEFAULT_SHOWN = {"n": "round(d^1.25)", "widths": "4n", "times": "none"}


def linear_options(func: Callable) -> Callable:
    """``--NAME`` for every :class:`LinearConfig` field, help from its metadata, plus
    ``--config FILE.toml``; values left out are ``None`` (then the file, then the default)."""
    spec = {f.name: f for f in fields(LinearConfig)}
    for name in reversed(LINEAR_FIELDS):
        meta = field_meta(name)
        rng = meta["range"].text()
        default = _DEFAULT_SHOWN.get(name, getattr(LinearConfig(), name))
        text = f"{meta['help']}; {rng} [default: {default}]" if rng else meta["help"]
        kind = spec[name].type
        func = click.option("--" + name.replace("_", "-"), name, default=None,
                            type=str if kind.startswith("tuple") else _TYPES[kind],
                            metavar=meta["metavar"], help=text)(func)
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        default=None, help="TOML file of these fields; options given here "
                        "override it.")(func)


@click.command()
@linear_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="HDF5 file to write (netCDF4-valid, kind linear).")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary on stdout.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FIG.png",
              help="draw the four-panel figure (png or pdf); with --seeds >= 2 also FIG_gp.")
@click.option("--progress/--no-progress", default=None,
              help="progress bar on stderr [default: only on a terminal].")
@overwrite_option
@memory_option
@reports_bad_input
def linear(config_path: str | None, output: str, as_json: bool, plot: str | None,
           progress: bool | None, overwrite: bool, max_memory: str | None,
           **options: Any) -> None:
    """Train f(x) = v.phi(W x/sqrt d)/sqrt m by full-batch gradient descent on the squared
    loss, at several nested widths and initialisations, next to Lee et al.'s linearization
    (arXiv:1902.06720, exact for GD through the empirical NTK), the infinite-width NTK model,
    Hu et al.'s linear model on affine features (arXiv:2006.14599) and Lee's Gaussian-process
    prediction, with the early-phase measures of Frankle et al. (arXiv:2002.10365): distances
    from initialisation, sign flips, the kernel's motion. Everything goes to OUTPUT.

    If OUTPUT already holds this run (same configuration), it is left untouched and reported
    again; a file holding anything else is refused unless --overwrite.
    """
    from meanfield.files.linear import read_linear, write_linear
    from meanfield.files.outputs import existing_result, existing_tagged
    from meanfield.io import check_writable
    from meanfield.linear_config import linear_config_from_sources
    from meanfield.linear_run import run_linear
    from meanfield.memory import check_estimate, linear_estimate, parse_size

    config = linear_config_from_sources(config_path, **options)
    out = check_writable(output)
    figures = _figure_paths(plot, config) if plot else []
    for fig in figures:
        check_writable(fig)
        existing_tagged(fig, config.hash(), overwrite)
    if existing_result(out, "linear", config.hash(), overwrite):
        click.echo(f"{out} already holds this run (same configuration); left untouched",
                   err=True)
        result = read_linear(out)
    else:
        check_estimate(linear_estimate(config),
                       None if max_memory is None else parse_size(max_memory),
                       sizes="n/n_test/widths/seeds/d")
        result = _run(run_linear, config, progress)
        write_linear(result, out)
    if figures:
        from meanfield.linear_plots import draw_gp, draw_linear, save_figure

        save_figure(draw_linear(result), figures[0], config.hash())
        if len(figures) > 1:
            save_figure(draw_gp(result), figures[1], config.hash())
    if as_json:
        click.echo(json.dumps(summary(result, out), allow_nan=False))
    else:
        _echo(result, Path(output), figures)


def _figure_paths(plot: str, config: LinearConfig) -> list[Path]:
    path = Path(plot)
    if path.suffix.lower() not in (".png", ".pdf"):
        raise BadInput(f"--plot must end in .png or .pdf, got {plot!r}")
    paths = [path]
    if config.seeds >= 2:
        paths.append(path.with_name(f"{path.stem}_gp{path.suffix}"))
    return paths


def _run(run: Callable, config: LinearConfig, show: bool | None) -> Any:
    import sys

    from tqdm import tqdm

    show = sys.stderr.isatty() if show is None else show
    total = config.seeds * len(config.widths) * config.steps
    with tqdm(total=total, disable=not show, unit="step", leave=False,
              dynamic_ncols=True) as bar:
        return run(config, on_step=lambda done, _: bar.update(done - bar.n))


def _finite(values: Any) -> Any:
    """JSON-ready: NaN and inf become ``None``."""
    if isinstance(values, list | tuple | np.ndarray) and np.ndim(values) > 0:
        return [_finite(v) for v in values]
    v = float(values)
    return v if math.isfinite(v) else None


FINAL = ("disc_lin", "disc_lin_test", "disc_hu_test", "change_test", "W_distance",
         "ntk_change", "kernel_distance")


def summary(result: Any, output: Path) -> dict[str, Any]:
    """The ``--json`` document (contract of the command)."""
    c = result.config
    return {
        "kind": "linear", "output": str(output), "widths": list(c.widths), "seeds": c.seeds,
        "steps": c.steps, "lr_max": _finite(result.attrs["lr_max"]),
        "final": {name: _finite(result.final_means(name)) for name in FINAL},
        "slopes": {name: _finite(result[f"slope_{name}"]) for name in
                   ("disc_lin", "disc_lin_test", "W_distance", "ntk_change")},
        "t_escape_hu": result.escape_medians("hu"),
        "t_escape_lin": result.escape_medians("lin"),
    }


def _echo(result: Any, output: Path, figures: list[Path]) -> None:
    c = result.config
    click.echo(f"linear run written to {output}")
    click.echo(f"  {c.activation}, d={c.d} n={c.n} n_test={c.n_test}, train {c.train}, "
               f"lr={c.lr:g} (lr_max={result.attrs['lr_max']:.4g}), {c.steps} steps, "
               f"{c.seeds} member(s); infinite-width NTK: {result.attrs['ntk_inf_method']}")
    for k, m in enumerate(c.widths):
        change = result.final_means("change_test")[k]
        lin = result.final_means("disc_lin_test")[k]
        hu = result.final_means("disc_hu_test")[k]
        click.echo(f"  width {m}: test change {change:.4g}; disc/change lin {lin / change:.3g},"
                   f" hu {hu / change:.3g}; W_distance "
                   f"{result.final_means('W_distance')[k]:.3g}" if change > 0 else
                   f"  width {m}: the network's test outputs did not move")
    if len(c.widths) > 1:
        click.echo("  slopes against width: " + ", ".join(
            f"{n} {float(result[f'slope_{n}']):.3g}" for n in
            ("disc_lin_test", "W_distance", "ntk_change")))
    for fig in figures:
        click.echo(f"  figure written to {fig}")
