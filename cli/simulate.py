"""``meanfield simulate``: finite-width particle simulation to an HDF5 file."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import click

from cli.common import BadInput, config_options, reports_bad_input, resolve_config

OPTIONS = (
    "M", "N", "d", "h", "alpha", "beta", "sa", "sw", "activation", "loss", "data",
    "label_noise", "margin", "n_test", "online", "batch", "dt", "growth", "t_max",
    "integrator", "dtype", "seed", "threads", "n_times", "times", "record_nodes",
    "checkpoint_every",
)


@contextlib.contextmanager
def _graceful_stop() -> Iterator[list[bool]]:
    """SIGINT / SIGTERM set a flag the simulation polls at every step (it then checkpoints and
    stops); a second signal interrupts at once (the last checkpoint stays valid)."""
    flag = [False]

    def handler(signum: int, frame: object) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@click.command()
@config_options(*OPTIONS)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="HDF5 file to write (netCDF4-valid).")
@click.option("--resume", is_flag=True,
              help="require a checkpoint (OUTPUT with .ckpt.h5) and continue from it.")
@click.option("--fresh", is_flag=True,
              help="discard an existing checkpoint and start from t = 0.")
@click.option("--progress/--no-progress", default=None,
              help="progress bar on stderr [default: only on a terminal].")
@reports_bad_input
def simulate(config_path: str | None, output: str, resume: bool, fresh: bool,
             progress: bool | None, **options: object) -> None:
    """Simulate the training of a finite two-layer network (M nodes, N examples, dimension d)
    and write the records (gamma, S, errors, loss, node trajectories, t_sat) to OUTPUT.

    Checkpoints go to OUTPUT with ``.h5`` replaced by ``.ckpt.h5``: every
    --checkpoint-every steps, and on Ctrl-C or SIGTERM (the run stops at the next step
    boundary). Running the same command again resumes automatically from a checkpoint of the
    same configuration (--checkpoint-every may differ) and ends with exactly the numbers of an
    uninterrupted run; a checkpoint of another configuration is refused (use --fresh to
    discard it). The checkpoint is removed once OUTPUT is written.
    """
    from meanfield.io import check_writable
    from meanfield.simulate import (
        SimulationInterrupted,
        checkpoint_config,
        checkpoint_path,
        run_hash,
        write_result,
    )
    from meanfield.simulate import simulate as run

    if resume and fresh:
        raise BadInput("--resume and --fresh exclude each other")
    config = resolve_config(config_path, **options)
    out = check_writable(output)
    ckpt = checkpoint_path(out)
    if ckpt.exists() and not fresh:
        try:
            saved = run_hash(checkpoint_config(ckpt))
        except (OSError, KeyError):
            raise BadInput(
                f"{ckpt} is not a readable checkpoint; use --fresh to discard it"
            ) from None
        if saved != run_hash(config):
            raise BadInput(f"checkpoint {ckpt} belongs to another configuration; run with "
                           "the options that made it, or with --fresh to discard it")
        resume = True
    elif resume:
        raise BadInput(f"--resume: no checkpoint {ckpt} to resume from")
    if fresh:
        ckpt.unlink(missing_ok=True)
    if resume:
        click.echo(f"resuming from {ckpt}", err=True)

    with _graceful_stop() as stop:
        try:
            result = run(config, checkpoint=ckpt, resume=resume, progress=progress,
                         should_stop=lambda: stop[0])
        except SimulationInterrupted as err:
            click.echo(f"interrupted at step {err.step}; state saved in {ckpt}; run the same "
                       "command again to resume", err=True)
            raise SystemExit(130) from None
        except KeyboardInterrupt:
            hint = (f"the last checkpoint {ckpt} is valid; run the same command again to "
                    "resume" if ckpt.exists() else "no checkpoint was written")
            click.echo(f"interrupted; {hint}", err=True)
            raise SystemExit(130) from None
        write_result(result, out)
    ckpt.unlink(missing_ok=True)

    s, a = result.series, result.attrs
    mode = ("online" if config.online else f"mini-batch {config.batch}" if config.batch
            else "full batch")
    evaluated = a["evaluated_total"] / a["dense_evaluations_total"]
    click.echo(f"simulation written to {Path(output)}")
    click.echo(f"  M={config.M} N={config.N} d={config.d} {config.activation}/{config.loss}, "
               f"{a['n_steps']} {config.integrator} steps ({mode}) to t={result.t[-1]:g} in "
               f"{a['elapsed_seconds']:.1f} s")
    click.echo(f"  final: gamma={s['gamma'][-1]:.4g} S={s['S'][-1]:.4g} "
               f"loss={s['loss'][-1]:.4g}")
    click.echo(f"  train_error={s['train_error'][-1]:.4g} test_error={s['test_error'][-1]:.4g} "
               f"test_misclassification={s['test_misclassification'][-1]:.4g}; "
               f"forward evaluations {evaluated:.3f} of dense")
