"""``meanfield theory``: the mean-field theory of hinge-loss training to an HDF5 file."""

from __future__ import annotations

import math
from pathlib import Path

import click

from cli.common import (
    BadInput,
    check_memory,
    config_options,
    memory_option,
    overwrite_option,
    reports_bad_input,
    resolve_config,
)
from meanfield.config import options_for


@click.command()
@config_options(*options_for("theory"))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="HDF5 file to write (netCDF4-valid); required unless --latex.")
@click.option("--latex", is_flag=True,
              help="print the derived equations (LaTeX) for the data law and exit; the "
                   "whole derivation, step by step with reasons, as a document or a figure: "
                   "meanfield derive ACTIVATION --section meanfield.")
@overwrite_option
@memory_option
@reports_bad_input
def theory(config_path: str | None, output: str | None, latex: bool, overwrite: bool,
           max_memory: str | None, **options: object) -> None:
    """Solve the mean-field theory of Pellegrini & Biroli (arXiv:2006.11209) for the given
    parameters: gamma(t), S, X, training error, loss, the asymptote gamma -> log(t)/4 + c,
    t_sat(x_par) with --x-par, and finite-M / finite-N indicators (M, N). Record times: --times,
    or the simulator's record times up to --t-max. ReLU uses the closed form; other
    activations the population solver."""
    from analytic.activations import get_activation
    from analytic.hinge import latex_equations
    from meanfield.config import run_hash
    from meanfield.files.outputs import existing_result
    from meanfield.files.theory import read_theory, write_theory
    from meanfield.io import check_writable
    from meanfield.theory import compute

    if options.get("times") is not None and options.get("t_max") is not None:
        raise BadInput("give either --t-max or --times, not both")
    config = resolve_config(config_path, **options)
    if latex:
        for name, eq in latex_equations(config.data, get_activation(config.activation)).items():
            click.echo(f"{name}: {eq}")
        return
    if output is None:
        raise BadInput("-o/--output is required (or use --latex)")
    out = check_writable(output)
    if existing_result(out, "theory", run_hash(config), overwrite, config):
        click.echo(f"{out} already holds this theory (same configuration); left untouched",
                   err=True)
        result = read_theory(out)
    else:
        check_memory(config, "theory", max_memory)
        result = compute(config)
        write_theory(result, out)
    click.echo(f"theory written to {Path(output)}")
    click.echo(f"  {result.method}; {len(result.t)} times up to t={result.t[-1]:g}")
    if math.isfinite(result.asymptote_c):
        click.echo(f"  asymptote: gamma -> log(t)/4 + c, c = {result.asymptote_c:.6g} "
                   f"(C = {result.asymptote_C:.6g})")
    else:
        click.echo("  asymptote: not derived for this activation (relu only)")
    click.echo(f"  final gamma = {result.gamma[-1]:.6g}, training error = "
               f"{result.train_error[-1]:.3g}")
