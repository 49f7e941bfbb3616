"""``meanfield reproduce``: rebuild a paper's figure from nothing."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import (
    BadInput,
    check_device,
    check_memory,
    memory_option,
    overwrite_option,
    progress_bar,
    reports_bad_input,
)


@click.command()
@click.argument("figure", type=str)
@click.option("--quick", is_flag=True,
              help="a smaller setting that runs in about a minute on two cores")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="output folder [default: ./reproduce-FIGURE or ./reproduce-FIGURE-quick]")
@click.option("--json", "as_json", is_flag=True, help="print the comparison report as JSON")
@click.option("--device", "device", type=str, default=None,
              help="where pb-fig1's simulation runs: cpu or cuda (one GPU through CuPy) "
                   "[default: cpu]")
@overwrite_option
@memory_option
@reports_bad_input
def reproduce(figure: str, quick: bool, out: str | None, as_json: bool, overwrite: bool,
              max_memory: str | None, device: str | None = None) -> None:
    """Derive, compute the theory, simulate, compare and draw FIGURE (pb-fig1: Fig. 1 of
    Pellegrini & Biroli 2020, M = 400, N = 10^5, d = 100; --quick: M = 200, N = 2 10^4,
    d = 50 on a geometric step schedule), or run and check a linear regime (lee-width: the
    network approaches Lee et al.'s linearization as the width grows; lee-gp: an ensemble of
    trained networks against Lee et al.'s Gaussian process; hu-early: the network follows
    Hu et al.'s linear model early on, better as d grows, then leaves it), or run and check
    the hinge model's crossover from rich to lazy (pb-crossover: network and linearization
    against the full and lazy theories over alpha; frankle-rewind: Frankle et al.'s rewinding
    arms against their restarted theory), printing the criteria and the verdict. Files of
    the folder that already hold this configuration's result are reused; files of another
    configuration are refused unless --overwrite."""
    import json

    from meanfield.compare.report import format_report, report_dict
    from meanfield.reproduce import CROSSOVER_TARGETS, FIGURES, LINEAR_TARGETS, figure_config
    from meanfield.reproduce import reproduce as run

    if figure not in FIGURES:
        raise BadInput(f"FIGURE must be one of {', '.join(FIGURES)}; got {figure!r}")
    folder = Path(out) if out is not None else Path(f"reproduce-{figure}"
                                                   + ("-quick" if quick else ""))
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--out {str(folder)!r} exists and is not a folder")
    if device not in (None, "cpu") and figure in (*LINEAR_TARGETS, *CROSSOVER_TARGETS):
        raise BadInput(f"--device {device}: only pb-fig1 runs on the simulator; {figure} runs "
                       "on the CPU")
    if figure in LINEAR_TARGETS:
        _linear(figure, quick, folder, as_json, overwrite, max_memory)
        return
    if figure in CROSSOVER_TARGETS:
        _crossover(figure, quick, folder, as_json, overwrite, max_memory)
        return
    config = figure_config(figure, quick, device=device)
    check_device(config)
    check_memory(config, "reproduce", max_memory)
    click.echo(f"reproducing {figure} ({'quick' if quick else 'full size'}: M={config.M}, "
               f"N={config.N}, d={config.d}, t_max={config.t_max:g}) into {folder}/", err=True)

    def on_stage(stage: str, seconds: float, path: Path | None) -> None:
        where = f" -> {path}" if path is not None else ""
        click.echo(f"  {stage:<9}{seconds:8.1f} s{where}", err=True)

    with progress_bar(config, None) as on_step:  # a bar over the simulation, on a terminal
        rep = run(figure, folder, quick=quick, config=config, on_stage=on_stage,
                  on_step=on_step, overwrite=overwrite)
    if rep.reused:
        click.echo(f"  reused (same configuration, left untouched): {', '.join(rep.reused)}",
                   err=True)
    if as_json:
        click.echo(json.dumps(report_dict(rep.comparison), indent=2))
        return
    click.echo(format_report(rep.comparison))
    click.echo("")
    for label, path in rep.files.items():
        click.echo(f"{label:<14}{path}")
    click.echo(f"total time    {sum(rep.seconds.values()):.1f} s")
    click.echo(f"verdict: {rep.verdict}")


def _on_stage(stage: str, seconds: float, path: Path | None) -> None:
    where = f" -> {path}" if path is not None else ""
    click.echo(f"  {stage:<9}{seconds:8.1f} s{where}", err=True)


def _report(rep, as_json: bool) -> None:
    """A target's criteria table, files and verdict (or its --json document)."""
    import json

    from meanfield.linear_targets import format_criteria

    if rep.reused:
        click.echo(f"  reused (same configuration, left untouched): {', '.join(rep.reused)}",
                   err=True)
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2, allow_nan=False))
        return
    click.echo(format_criteria(rep.criteria))
    click.echo("")
    for label, path in rep.files.items():
        click.echo(f"{label:<14}{path}")
    click.echo(f"total time    {sum(rep.seconds.values()):.1f} s")
    click.echo(f"verdict: {rep.verdict}")


def _crossover(figure: str, quick: bool, folder: Path, as_json: bool, overwrite: bool,
               max_memory: str | None) -> None:
    """A crossover target: its runs, figure, criteria table and verdict."""
    from meanfield.crossover_targets import crossover_runs
    from meanfield.memory import parse_size
    from meanfield.reproduce import reproduce_crossover

    runs = crossover_runs(figure, quick)
    first = next(iter(runs.values()))
    c = first.config
    alphas = ",".join(f"{a:g}" for a in first.alphas)
    rewind = [r.settings.rewind_at for r in runs.values() if r.settings.rewind_at is not None]
    extra = f" tau_k={','.join(f'{t:g}' for t in rewind)}" if rewind else ""
    click.echo(f"reproducing {figure} ({'quick' if quick else 'full size'}: M={c.M}, N={c.N}, "
               f"d={c.d}, alphas={alphas}, tau_max={first.settings.tau_max:g}{extra}) into "
               f"{folder}/", err=True)
    rep = reproduce_crossover(figure, folder, quick=quick, on_stage=_on_stage,
                              overwrite=overwrite,
                              max_memory=None if max_memory is None else parse_size(max_memory))
    _report(rep, as_json)


def _linear(figure: str, quick: bool, folder: Path, as_json: bool, overwrite: bool,
            max_memory: str | None) -> None:
    """A linear target: its runs, figure, criteria table and verdict."""

    from meanfield.linear_targets import linear_configs
    from meanfield.memory import parse_size
    from meanfield.reproduce import reproduce_linear

    runs = ", ".join(f"{c.activation} d={c.d} n={c.n} widths={','.join(map(str, c.widths))} "
                     f"{c.seeds} member(s) {c.steps} steps"
                     for c in linear_configs(figure, quick).values())
    click.echo(f"reproducing {figure} ({'quick' if quick else 'full size'}: {runs}) into "
               f"{folder}/", err=True)
    rep = reproduce_linear(figure, folder, quick=quick, on_stage=_on_stage, overwrite=overwrite,
                           max_memory=None if max_memory is None else parse_size(max_memory))
    _report(rep, as_json)
