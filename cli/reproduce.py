"""``meanfield reproduce``: rebuild a paper's figure from nothing."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import (
    BadInput,
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
@overwrite_option
@memory_option
@reports_bad_input
def reproduce(figure: str, quick: bool, out: str | None, as_json: bool, overwrite: bool,
              max_memory: str | None) -> None:
    """Derive, compute the theory, simulate, compare and draw FIGURE (pb-fig1: Fig. 1 of
    Pellegrini & Biroli 2020, M = 400, N = 10^5, d = 100; --quick: M = 200, N = 2 10^4,
    d = 50 on a geometric step schedule). Files of the folder that already hold this
    configuration's result are reused; files of another configuration are refused unless
    --overwrite."""
    import json

    from meanfield.compare.report import format_report, report_dict
    from meanfield.reproduce import FIGURES, figure_config
    from meanfield.reproduce import reproduce as run

    if figure not in FIGURES:
        raise BadInput(f"FIGURE must be one of {', '.join(FIGURES)}; got {figure!r}")
    folder = Path(out) if out is not None else Path(f"reproduce-{figure}"
                                                   + ("-quick" if quick else ""))
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--out {str(folder)!r} exists and is not a folder")
    config = figure_config(figure, quick)
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
