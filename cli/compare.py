"""``meanfield compare``: theory against simulation, with a verdict per metric."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import click

from cli.common import (
    BadInput,
    check_memory,
    memory_option,
    overwrite_option,
    reports_bad_input,
)

FIGURE_SUFFIXES = (".png", ".pdf")


def errors_path(plot: str | Path) -> Path:
    """Where the error-curves figure goes next to the Fig. 1 file: ``fig_errors.png``."""
    plot = Path(plot)
    return plot.with_name(plot.stem + "_errors" + plot.suffix)


@click.command()
@click.argument("simulation", type=click.Path(dir_okay=False))
@click.argument("theory", type=click.Path(dir_okay=False), required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="write the comparison (meanfield file of kind 'comparison') here")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="write the four-panel Fig. 1 (fig.png or fig.pdf) and the error curves "
                   "next to it (fig_errors.png)")
@click.option("--strict", is_flag=True, help="exit status 1 when the verdict is 'disagree'")
@click.option("--no-schedule", is_flag=True,
              help="do not push the theory through the simulation's step schedule")
@overwrite_option
@memory_option
@reports_bad_input
def compare(simulation: str, theory: str | None, output: str | None, as_json: bool,
            plot: str | None, strict: bool, no_schedule: bool, overwrite: bool,
            max_memory: str | None) -> None:
    """Compare SIMULATION (meanfield simulate) with THEORY (meanfield theory; computed for the
    simulation's configuration when left out).

    Prints a table (or JSON with --json) of the metrics, their tolerances and verdicts;
    exit status 0 whatever the verdict unless --strict. An OUTPUT or figure that already holds
    this comparison (same inputs) is left untouched; one holding another is refused unless
    --overwrite.
    """
    from meanfield.compare import CompareWarning, compare
    from meanfield.compare.report import format_report, report_dict
    from meanfield.files.comparison import write_comparison
    from meanfield.files.outputs import check_figure, comparison_identity, existing_result
    from meanfield.files.simulation import read_simulation
    from meanfield.files.theory import read_theory
    from meanfield.io import check_writable

    if plot is not None and Path(plot).suffix.lower() not in FIGURE_SUFFIXES:
        raise BadInput(f"--plot must end in {' or '.join(FIGURE_SUFFIXES)}, got {plot!r}")
    for path in (output, plot):
        if path is not None:
            check_writable(path)
    if output is not None and plot is not None and Path(output).resolve() in (
            Path(plot).resolve(), errors_path(plot).resolve()):
        raise BadInput(f"-o {output} and --plot {plot} name the same file; allowed: "
                       "different files")
    sim = read_simulation(simulation)
    check_memory(sim.config, "compare", max_memory)
    th = read_theory(theory) if theory is not None else None
    identity = comparison_identity(sim.config, None if th is None else th.config,
                                   not no_schedule)
    reuse = output is not None and existing_result(output, "comparison", identity, overwrite)
    if plot is not None:
        for path in (plot, errors_path(plot)):
            check_figure(path, identity, overwrite)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CompareWarning)
        result = compare(sim, th, on_schedule=not no_schedule)
    for w in caught:
        if issubclass(w.category, CompareWarning):
            click.echo(f"warning: {w.message}", err=True)
    if reuse:
        click.echo(f"{output} already holds this comparison (same inputs); left untouched",
                   err=True)
    elif output is not None:
        write_comparison(result, output)
    if plot is not None:
        _draw(result, output, plot)
    if as_json:
        click.echo(json.dumps(report_dict(result), indent=2))
    else:
        click.echo(format_report(result))
        if output is not None:
            click.echo(f"comparison written to {output}")
        if plot is not None:
            click.echo(f"figures written to {plot} and {errors_path(plot)}")
    if strict and result.verdict != "agree":
        raise SystemExit(1)


def _draw(result: object, output: str | None, plot: str) -> None:
    """Fig. 1 and the error curves, drawn from a comparison file only: ``output``, or a
    temporary one."""
    from meanfield.files.comparison import write_comparison
    from meanfield.plots import error_figure, fig1

    with tempfile.TemporaryDirectory() as tmp:
        source = output if output is not None else Path(tmp) / "compare.h5"
        if output is None:
            write_comparison(result, source)
        fig1(source, plot)
        error_figure(source, errors_path(plot))
