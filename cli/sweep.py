"""``meanfield sweep``: many simulations from one sweep file, on Dask, merged into one file."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import click

from cli.common import BadInput, check_device, graceful_stop, reports_bad_input

STUDIES = ("finite-m", "finite-n", "alpha")
MAX_WORKERS = 4096
"""The most local worker processes --workers may ask for."""
MAX_SECONDS = 86400.0
"""The longest --connect-timeout and --checkpoint-seconds (a day)."""
_SCHEDULER = re.compile(r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})")


class OneLineCommand(click.Command):
    """A command whose usage errors are one line on stderr (``Error: ...``), exit status 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            err.ctx = None  # no usage text: one line
            raise


def _positive(value: float, option: str) -> float:
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise BadInput(f"{option} must be a positive number of seconds, at most "
                       f"{MAX_SECONDS:g}, got {value!r}")
    return value


def _check_options(spec_path: str | None, study: str | None, quick: bool, output: str | None,
                   scheduler: str | None, scheduler_file: str | None,
                   connect_timeout: float, checkpoint_seconds: float) -> Path:
    """Refuse bad option combinations (one line, exit 2); return OUTDIR."""
    if (spec_path is None) == (study is None):
        raise BadInput("give a sweep file SPEC or --study NAME (one of them)")
    if quick and study is None:
        raise BadInput("--quick goes with --study")
    if scheduler is not None and scheduler_file is not None:
        raise BadInput("--scheduler and --scheduler-file exclude each other")
    if scheduler is not None:
        match = _SCHEDULER.fullmatch(scheduler)
        if match is None or not 1 <= int(match.group(3)) <= 65535:
            raise BadInput(f"--scheduler must be tcp://HOST:PORT or tls://HOST:PORT, got "
                           f"{scheduler!r}")
    _positive(connect_timeout, "--connect-timeout")
    _positive(checkpoint_seconds, "--checkpoint-seconds")
    if output is None:
        output = (Path(spec_path).stem if spec_path is not None
                  else f"study-{study}{'-quick' if quick else ''}")
    out = Path(output)
    try:
        if out.exists() and not out.is_dir():
            raise BadInput(f"-o {output!r} is an existing file; OUTDIR must be a folder")
    except (OSError, ValueError) as err:
        raise BadInput(f"-o {output!r} cannot be used: {err}") from None
    if out.name in ("", ".", "..") and not out.is_dir():
        raise BadInput(f"-o {output!r} is not a folder name")
    return out


@click.command(cls=OneLineCommand)
@click.argument("spec_path", metavar="SPEC.toml", required=False,
                type=click.Path(dir_okay=False))
@click.option("--study", type=click.Choice(STUDIES),
              help="run a built-in study instead of a sweep file.")
@click.option("--quick", is_flag=True, help="the study's quick version (a few minutes).")
@click.option("-o", "--output", type=click.Path(),
              help="OUTDIR [default: the spec's stem, or study-NAME[-quick]].")
@click.option("--workers", type=click.IntRange(min=1, max=MAX_WORKERS),
              help="local worker processes [default: cores / threads per point, capped by "
                   "memory and by the points to run].")
@click.option("--scheduler", help="run on a running Dask cluster: tcp://HOST:PORT or "
                                  "tls://HOST:PORT (tls uses Dask's security settings).")
@click.option("--scheduler-file", type=click.Path(dir_okay=False),
              help="run on the Dask cluster of this scheduler file (dask scheduler "
                   "--scheduler-file, dask-jobqueue, dask-mpi).")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True,
              help="seconds to reach the scheduler (and for it to have a worker).")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
              help="re-runs of a point whose task raised an exception.")
@click.option("--checkpoint-seconds", type=float, default=120.0, show_default=True,
              help="running points checkpoint at least this often (wall time); a dead "
                   "worker loses at most this much compute.")
@click.option("--dashboard", is_flag=True,
              help="serve Dask's dashboard on 127.0.0.1:8787 (local cluster).")
@click.option("--dry-run", is_flag=True,
              help="list the points and their status (done, partial, todo); run nothing.")
@click.option("--print-spec", is_flag=True,
              help="print the resolved spec as TOML (for a study: its built-in spec).")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document on stdout.")
@click.option("--progress/--no-progress", default=None,
              help="progress bar on stderr [default: only on a terminal].")
@click.option("--strict", is_flag=True, help="exit 1 when a study verdict is disagree.")
@reports_bad_input
def sweep(spec_path: str | None, study: str | None, quick: bool, output: str | None,
          workers: int | None, scheduler: str | None, scheduler_file: str | None,
          connect_timeout: float, retries: int, checkpoint_seconds: float, dashboard: bool,
          dry_run: bool, print_spec: bool, as_json: bool, progress: bool | None,
          strict: bool) -> None:
    """Run every point of a sweep file SPEC.toml ([sweep] seeds/name, [base], [grid], [zip])
    on Dask, one `meanfield simulate` run per point, and merge their time series into
    OUTDIR/sweep.nc (xarray-readable).

    Points are named by their run hash (OUTDIR/points/<hash>.h5), so the same command resumes
    at any moment: finished points are skipped, checkpointed points resumed, and the numbers
    are those of an uninterrupted sweep. A local cluster of worker processes on 127.0.0.1 is
    started by default; --scheduler or --scheduler-file use a running one (OUTDIR must then
    be on a filesystem the workers share).

    Exit status: 0 every point complete; 1 some point failed (the others are kept and
    merged), or --strict and a study verdict is disagree; 2 bad input; 130 interrupted.
    """
    from meanfield import sweep as engine

    outdir = _check_options(spec_path, study, quick, output, scheduler, scheduler_file,
                            connect_timeout, checkpoint_seconds)
    spec = _load(spec_path, study, quick)
    if print_spec:
        click.echo(spec.to_toml(), nl=False)
        return
    if dry_run:
        _print_dry_run(engine.dry_run(spec, outdir), as_json)
        return
    if scheduler is None and scheduler_file is None:
        _check_local_memory(spec)
        for point in spec.points():  # GPU points on this machine: CuPy and a GPU, or exit 2
            if point.config.device == "cuda":
                check_device(point.config)
                break
    if workers is not None and workers > engine.usable_cores():
        click.echo(f"warning: --workers {workers} exceeds the {engine.usable_cores()} usable "
                   "cores", err=True)
    show = sys.stderr.isatty() if progress is None else progress

    def warn(line: str) -> None:
        click.echo(f"warning: {line}", err=True)

    with graceful_stop() as stop:
        result = engine.run(spec, outdir, workers=workers, scheduler=scheduler,
                            scheduler_file=scheduler_file, connect_timeout=connect_timeout,
                            retries=retries, checkpoint_seconds=checkpoint_seconds,
                            dashboard=dashboard, progress=show,
                            should_stop=lambda: stop[0], on_warning=warn)
    if result.interrupted:
        complete = sum(r.status in ("ran", "resumed", "skipped") for r in result.runs)
        partial = sum(engine.checkpoint_of(engine.point_path(outdir, r.hash)).exists()
                      for r in result.runs)
        click.echo(f"interrupted: {complete} of {len(result.runs)} points complete, "
                   f"{partial} checkpointed; run the same command again to resume", err=True)
        raise SystemExit(130)
    document: dict[str, Any] = result.document()
    verdict = None
    if study is not None:
        verdict, table, document["study"] = _study(study, quick, spec, outdir)
    if as_json:
        click.echo(json.dumps(document, allow_nan=False, default=_json_default))
    else:
        click.echo(result.summary())
        if study is not None:
            click.echo(table)
    for r in result.runs:
        if r.status == "failed":
            click.echo(f"point {r.run} ({r.hash}) failed: {r.error}", err=True)
    if result.count("failed") or (strict and verdict == "disagree"):
        raise SystemExit(1)


def _json_default(value: Any) -> Any:
    if isinstance(value, float):
        return None
    return str(value)


def _load(spec_path: str | None, study: str | None, quick: bool) -> Any:
    if study is not None:
        from meanfield.studies import study_spec

        return study_spec(study, quick)
    from meanfield.sweep_spec import load_spec

    return load_spec(spec_path)


def _check_local_memory(spec: Any) -> None:
    """Refuse a sweep whose largest point does not fit in this machine's memory."""
    from meanfield.memory import check_estimate
    from meanfield.sweep import largest_estimate

    check_estimate(largest_estimate([p.config for p in spec.points()]))


def _print_dry_run(runs: list[Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"points": len(runs), "runs": [r.to_dict() for r in runs]}))
        return
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "partial", "todo")}
    click.echo(f"{len(runs)} points: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for r in runs:
        values = " ".join(f"{k}={v}" for k, v in r.values.items())
        click.echo(f"{r.run:6d}  {r.hash}  {r.status:7s}  {values}  "
                   f"{json.dumps(r.config, separators=(',', ':'))}")


def _study(name: str, quick: bool, spec: Any, outdir: Path) -> tuple[str, str, dict]:
    """Analyse the study's points: study.h5, study.json, NAME.png; (verdict, table, doc)."""
    from meanfield import studies
    from meanfield.sweep import POINTS

    result = studies.analyse(name, quick, spec, outdir / POINTS)
    studies.write_outputs(result, outdir)
    return result.verdict, studies.format_table(result), studies.study_document(result)
