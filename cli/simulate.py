"""``meanfield simulate``: finite-width particle simulation to an HDF5 file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.common import (
    check_device,
    check_memory,
    config_options,
    graceful_stop,
    memory_option,
    overwrite_option,
    progress_bar,
    reports_bad_input,
    resolve_config,
)
from meanfield.config import options_for

if TYPE_CHECKING:
    from meanfield.files.simulation import SimulationResult


@click.command()
@config_options(*options_for("simulate"))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="HDF5 file to write (netCDF4-valid).")
@click.option("--resume", is_flag=True,
              help="require a checkpoint (OUTPUT with .ckpt.h5) and continue from it.")
@click.option("--fresh", is_flag=True,
              help="discard an existing checkpoint and start from t = 0.")
@click.option("--progress/--no-progress", default=None,
              help="progress bar on stderr [default: only on a terminal].")
@overwrite_option
@memory_option
@reports_bad_input
def simulate(config_path: str | None, output: str, resume: bool, fresh: bool,
             progress: bool | None, overwrite: bool, max_memory: str | None,
             **options: object) -> None:
    """Simulate the training of a finite two-layer network (M nodes, N examples, dimension d)
    and write the records (gamma, S, errors, loss, node trajectories, t_sat) to OUTPUT.

    Checkpoints go to OUTPUT with ``.h5`` replaced by ``.ckpt.h5``: every
    --checkpoint-every steps, and on Ctrl-C or SIGTERM (the run stops at the next step
    boundary). Running the same command again resumes automatically from a checkpoint of the
    same configuration (--checkpoint-every may differ) and ends with exactly the numbers of an
    uninterrupted run; a checkpoint of another configuration is refused (use --fresh to
    discard it). The checkpoint is removed once OUTPUT is written.

    If OUTPUT already holds this run (same configuration), it is left untouched and reported
    again; a file holding anything else is refused unless --overwrite.
    """
    from meanfield.config import run_hash
    from meanfield.files.checkpoint import checkpoint_path, resume_decision
    from meanfield.files.outputs import existing_result
    from meanfield.files.simulation import read_simulation, write_simulation
    from meanfield.io import check_writable
    from meanfield.simulate import SimulationInterrupted, check_steps
    from meanfield.simulate import simulate as run

    config = resolve_config(config_path, **options)
    check_device(config)
    out = check_writable(output)
    if existing_result(out, "simulation", run_hash(config), overwrite, config):
        click.echo(f"{out} already holds this run (same configuration); left untouched",
                   err=True)
        _summary(read_simulation(out), Path(output))
        return
    check_steps(config)
    check_memory(config, "simulate", max_memory)
    ckpt = checkpoint_path(out)
    resume = resume_decision(ckpt, config, resume, fresh)
    if resume:
        click.echo(f"resuming from {ckpt}", err=True)

    with graceful_stop() as stop, progress_bar(config, progress) as on_step:
        try:
            result = run(config, checkpoint=ckpt, resume=resume, on_step=on_step,
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
        write_simulation(result, out)
    ckpt.unlink(missing_ok=True)
    _summary(result, Path(output))


def _summary(result: SimulationResult, output: Path) -> None:
    """Four lines: where the file went, the run, the final state, the errors and work."""
    config, s, a = result.config, result.series, result.attrs
    mode = ("online" if config.online else f"mini-batch {config.batch}" if config.batch
            else "full batch") + (" on cuda" if config.device == "cuda" else "")
    evaluated = a["evaluated_total"] / a["dense_evaluations_total"]
    click.echo(f"simulation written to {output}")
    click.echo(f"  M={config.M} N={config.N} d={config.d} {config.activation}/{config.loss}, "
               f"{a['n_steps']} {config.integrator} steps ({mode}) to t={result.t[-1]:g} in "
               f"{a['elapsed_seconds']:.1f} s")
    click.echo(f"  final: gamma={s['gamma'][-1]:.4g} S={s['S'][-1]:.4g} "
               f"loss={s['loss'][-1]:.4g}")
    click.echo(f"  train_error={s['train_error'][-1]:.4g} test_error={s['test_error'][-1]:.4g} "
               f"test_misclassification={s['test_misclassification'][-1]:.4g}; "
               f"forward evaluations {evaluated:.3f} of dense"
               + (f" (skipping certificate in {a['certificate_steps']} of "
                  f"{a['dense_evaluations_total'] // config.N} velocity calls)"
                  if a.get("certificate_steps") else ""))
