"""``meanfield crossover``: rich to lazy learning in the hinge model, to an HDF5 file."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import click

from cli.common import (
    BadInput,
    memory_option,
    option_help,
    overwrite_option,
    reports_bad_input,
)

#: the model and data options, with the crossover's own defaults where they differ from
#: ``meanfield simulate``'s
CONFIG_OPTIONS = ("M", "N", "d", "h", "beta", "sa", "sw", "n_test", "data", "dtype", "seed",
                  "threads")
DEFAULTS = {"N": 20_000, "d": 50}
_TYPES = {"M": int, "N": int, "d": int, "n_test": int, "seed": int, "threads": int,
          "h": float, "beta": float, "sa": float, "sw": float, "data": str, "dtype": str}
#: the most alphas, and the most lazy-time steps of one alpha
MAX_ALPHAS = 1000
MAX_STEPS = 10_000_000
MAX_TIMES = 10_000
MAX_TAU = 1e6


def _config_options(func: Any) -> Any:
    for name in reversed(CONFIG_OPTIONS):
        text = option_help(name)
        if name in DEFAULTS:
            text = text.rsplit(" [default:", 1)[0] + f" [default: {DEFAULTS[name]}]"
        func = click.option("--" + name.replace("_", "-"), name, type=_TYPES[name],
                            default=None, help=text)(func)
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        default=None, help="TOML file of config fields; options given here "
                        "override it.")(func)


def _alphas(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"--alphas must be comma-separated numbers, got {text[:80]!r}") from None
    if not values or len(values) > MAX_ALPHAS:
        raise BadInput(f"--alphas must hold 1 to {MAX_ALPHAS} values, got {len(values)}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise BadInput(f"--alphas must be positive finite numbers, got {values[:8]}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise BadInput(f"--alphas must be strictly increasing, got {values[:8]}")
    return values


@click.command()
@click.option("--alphas", required=True, metavar="A1,A2,...",
              help="output scales alpha, positive and strictly increasing.")
@_config_options
@click.option("--tau-max", type=float, default=10.0, show_default=True,
              help="lazy time of the end, tau = alpha^2 beta (sa^2+sw^2) t / (4 d); > 0.")
@click.option("--dtau", type=float, default=0.02, show_default=True,
              help="largest lazy-time step; > 0.")
@click.option("--dgamma", type=float, default=0.02, show_default=True,
              help="largest change of gamma in one step (early, all examples unsatisfied); > 0.")
@click.option("--growth", type=float, default=0.02, show_default=True,
              help="geometric steps dtau_n = max(delta, growth tau_n); in [0, 1].")
@click.option("--n-times", type=int, default=40, show_default=True,
              help="log-spaced record times in [tau_max/1000, tau_max], plus 0; >= 2.")
@click.option("--n-probe", type=int, default=200, show_default=True,
              help="held-out points of the kernel measures; in [1, n_test].")
@click.option("--error-level", type=float, default=0.3, show_default=True,
              help="training error whose first crossing is reported; in (0, 1).")
@click.option("--rewind-at", type=float, default=None, metavar="TAU_K",
              help="restart the three rewinding arms (signs, signs_random, shuffle) from the "
                   "network at lazy time TAU_K, in (0, tau_max).")
@click.option("--linearized/--no-linearized", default=True, show_default=True,
              help="also train the network's linearization around initialisation.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="HDF5 file to write (netCDF4-valid, kind crossover).")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary on stdout.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FIG.png",
              help="draw the four-panel figure (png or pdf).")
@overwrite_option
@memory_option
@reports_bad_input
def crossover(alphas: str, config_path: str | None, tau_max: float, dtau: float,
              dgamma: float, growth: float, n_times: int, n_probe: int, error_level: float,
              rewind_at: float | None, linearized: bool, output: str, as_json: bool,
              plot: str | None, overwrite: bool, max_memory: str | None,
              **options: Any) -> None:
    """Train the hinge-loss ReLU network of Pellegrini & Biroli (arXiv:2006.11209), from
    antisymmetric node pairs (f_0 = 0), at several output scales alpha to the same lazy time
    tau, next to its linearization around initialisation (Lee et al., arXiv:1902.06720), the
    mean-field theory and its lazy limit; with --rewind-at, Frankle et al.'s rewinding
    experiments (arXiv:2002.10365). Everything goes to OUTPUT.

    If OUTPUT already holds this run, it is left untouched and reported again; a file holding
    anything else is refused unless --overwrite.
    """
    from meanfield.config import from_sources, load_toml
    from meanfield.crossover_run import CrossoverSettings, check_inputs, run_crossover
    from meanfield.files.crossover import crossover_identity, read_crossover, write_crossover
    from meanfield.files.outputs import existing_result, existing_tagged
    from meanfield.io import check_writable
    from meanfield.memory import check_estimate, crossover_estimate, parse_size
    from meanfield.step import set_threads

    values = _alphas(alphas)
    from_file = load_toml(config_path) if config_path is not None else {}
    given = {k: v for k, v in options.items() if v is not None}
    config = from_sources(None, **{**{k: v for k, v in DEFAULTS.items() if k not in from_file},
                                   **from_file, **given})
    for name, value, hi in (("--tau-max", tau_max, MAX_TAU), ("--n-times", n_times, MAX_TIMES)):
        if value > hi:
            raise BadInput(f"{name} must be at most {hi:g} (the supported range), got {value:g}")
    settings = CrossoverSettings(tau_max=tau_max, dtau=dtau, dgamma=dgamma, growth=growth,
                                 n_times=n_times, n_probe=n_probe, error_level=error_level,
                                 rewind_at=rewind_at, linearized=linearized)
    check_inputs(config, values, settings)
    _check_steps(config, values, settings)
    out = check_writable(output)
    identity = crossover_identity(config, settings, values)
    if plot is not None:
        if Path(plot).suffix.lower() not in (".png", ".pdf"):
            raise BadInput(f"--plot must end in .png or .pdf, got {plot!r}")
        check_writable(plot)
        existing_tagged(plot, identity, overwrite)
    if existing_result(out, "crossover", identity, overwrite):
        click.echo(f"{out} already holds this run (same inputs); left untouched", err=True)
        result = read_crossover(out)
    else:
        check_estimate(crossover_estimate(config, len(values), settings),
                       None if max_memory is None else parse_size(max_memory))
        set_threads(config.threads)
        result = run_crossover(config, values, **dataclasses.asdict(settings))
        write_crossover(result, out)
    if plot is not None:
        from meanfield.crossover_plots import draw_crossover
        from meanfield.plots import save_figure

        save_figure(draw_crossover(result), plot, identity)
    if as_json:
        click.echo(json.dumps(summary(result, out), allow_nan=False))
    else:
        _echo(result, out, plot)


def _check_steps(config: Any, alphas: list[float], settings: Any) -> None:
    """Refuse a run of more than :data:`MAX_STEPS` lazy-time steps for some alpha."""
    from meanfield.crossover_run import record_times, step_floor
    from meanfield.schedule import count_steps

    records = record_times(settings.tau_max, settings.n_times, settings.rewind_at)
    for alpha in alphas:
        delta = step_floor(config.replace(alpha=alpha), alpha, settings.dtau, settings.dgamma)
        steps = count_steps(delta, settings.growth, settings.tau_max, tuple(records[1:]))
        if steps > MAX_STEPS:
            raise BadInput(f"alpha = {alpha:g} needs about {steps:.3g} steps, more than "
                           f"{MAX_STEPS:.0e}: raise --dtau, --dgamma or --growth, or lower "
                           "--tau-max")


def _finite(value: Any) -> Any:
    if isinstance(value, list | tuple) or getattr(value, "ndim", 0) > 0:
        return [_finite(v) for v in value]
    v = float(value)
    return v if math.isfinite(v) else None


def summary(result: Any, output: Path) -> dict[str, Any]:
    """The ``--json`` document (contract of the command)."""
    return {"kind": "crossover", "output": str(output), "alphas": _finite(result.alpha),
            "alpha_c": _finite(result.alpha_c), "S_star": _finite(result.at_alpha["S_star"]),
            "error_level": result.settings.error_level,
            "at_error": {k: _finite(v) for k, v in sorted(result.at_alpha.items())}}


def _echo(result: Any, output: Path, plot: str | None) -> None:
    c, st = result.config, result.settings
    click.echo(f"crossover written to {output}")
    click.echo(f"  M={c.M} N={c.N} d={c.d}, {len(result.alpha)} alphas to tau = {st.tau_max:g};"
               f" alpha_c = {result.alpha_c:.4g}; error level {st.error_level:g}")
    at = result.at_alpha
    for k, alpha in enumerate(result.alpha):
        click.echo(f"  alpha {alpha:g}: tau at error net {at['tau_at_error_net'][k]:.4g}, "
                   f"theory {at['tau_at_error_theory'][k]:.4g}, lazy "
                   f"{at['tau_at_error_lazy'][k]:.4g}; gamma net "
                   f"{at['gamma_at_error_net'][k]:.4g}, theory "
                   f"{at['gamma_at_error_theory'][k]:.4g}")
    if plot is not None:
        click.echo(f"  figure written to {plot}")
