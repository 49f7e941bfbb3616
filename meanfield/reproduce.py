"""Rebuild a paper's figure from nothing: derive, theory, simulate, compare, figure.

``pb-fig1`` is Fig. 1 of Pellegrini & Biroli (arXiv:2006.11209): a ReLU network
``f(x) = (1/M) sum_i a_i relu(w_i . x / sqrt d)`` trained by gradient descent on the linear hinge
loss (``h = 1``) with Gaussian data and labels ``sign(x_1)``, ``M = 400`` nodes, ``N = 10^5``
examples, ``d = 100``, explicit Euler with ``dt = 1`` up to ``t = 2000``. The quick setting
(``quick=True``) keeps the physics (same ``alpha``, ``beta``, ``h``, ``sa``, ``sw``, data law) at a
size that runs in about a minute on two cores: fewer nodes, examples and dimensions, and a
geometric step schedule (``dt_n = max(dt, growth t_n)``) that the schedule theory of
:mod:`meanfield.compare` follows exactly.

Files written to the output folder: ``derivation.tex`` (the derived equations, LaTeX),
``theory.h5``, ``simulation.h5``, ``compare.h5`` and the figures ``fig1.png`` and
``errors.png``.

``lee-width``, ``lee-gp`` and ``hu-early`` are runs of ``meanfield linear`` checked against
criteria: their settings, criteria and figures are those of :mod:`meanfield.linear_targets`;
:func:`reproduce_linear` runs them, writes each run's file (kind ``linear``) and the figure
into the output folder and evaluates the criteria (verdict ``agree`` iff every one holds).

``pb-crossover`` and ``frankle-rewind`` are runs of ``meanfield crossover`` checked against
criteria (settings, criteria and the frankle-rewind figure in :mod:`meanfield.crossover_targets`);
:func:`reproduce_crossover` runs them, writes each run's file (kind ``crossover``) and the
figure and evaluates the criteria.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meanfield.compare import Comparison
from meanfield.config import Config, ConfigError, make_config
from meanfield.crossover_targets import TARGETS as CROSSOVER_TARGETS
from meanfield.linear_targets import TARGETS as LINEAR_TARGETS
from meanfield.linear_targets import Criterion

#: full-size setting of the paper's Fig. 1
PB_FIG1 = {
    "M": 400, "N": 100_000, "d": 100, "n_test": 10_000, "h": 1.0, "alpha": 1.0, "beta": 1.0,
    "sa": 1.0, "sw": 1.0, "activation": "relu", "loss": "hinge", "data": "gaussian",
    "dt": 1.0, "growth": 0.0, "t_max": 2000.0, "n_times": 100, "seed": 0,
}
#: the quick setting (about a minute on two cores)
PB_FIG1_QUICK = {
    **PB_FIG1, "M": 200, "N": 20_000, "d": 50, "n_test": 4_000, "growth": 0.02, "n_times": 60,
}
#: every target of ``meanfield reproduce``: the comparison pb-fig1, the linear targets, then
#: the crossover targets
FIGURES = ("pb-fig1", *LINEAR_TARGETS, *CROSSOVER_TARGETS)
#: the figures a reproduction draws into its folder
FIGURE_FILES = ("fig1.png", "errors.png")


@dataclass
class Reproduction:
    """Where everything went, how long each part took, and the comparison."""

    name: str
    out: Path
    config: Config
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    comparison: Comparison | None = None
    reused: list[str] = field(default_factory=list)  # stages whose file held this result

    @property
    def verdict(self) -> str:
        return self.comparison.verdict


def figure_config(name: str, quick: bool = False, **overrides) -> Config:
    """The configuration of figure ``name`` (full size, or quick), with ``overrides``
    (pb-fig1; the linear targets have theirs in :func:`meanfield.linear_targets.linear_configs`)."""
    if name in LINEAR_TARGETS:
        raise ConfigError(f"{name} is a run of meanfield linear: its configurations are "
                          f"meanfield.linear_targets.linear_configs({name!r})")
    if name in CROSSOVER_TARGETS:
        raise ConfigError(f"{name} is a run of meanfield crossover: its runs are "
                          f"meanfield.crossover_targets.crossover_runs({name!r})")
    if name not in FIGURES:
        raise ConfigError(f"figure must be one of {', '.join(FIGURES)}; got {name!r}")
    return make_config(**{**(PB_FIG1_QUICK if quick else PB_FIG1), **overrides})


def _derive(config: Config, path: Path) -> None:
    """The derivation document of ``config``'s activation and data law, as written by
    ``meanfield derive ACTIVATION --data DATA --steps --subs alpha=..,d=.. --latex``: the
    Gaussian moments, kernels and affine NTK (at ``config.d``) and the mean-field theory, every
    step with its reason and substituted at the configuration's parameters, with the constants
    ``C``, ``c`` and the early slope; a complete LaTeX document, written atomically."""
    import shlex
    import sys
    from fractions import Fraction

    from analytic import document
    from analytic.activations import get_activation
    from analytic.gaussian import moments
    from analytic.kernels import affine_coefficients, kernel_report
    from analytic.typeset import latex_document, write_text
    from meanfield import io

    act = get_activation(config.activation)
    names = ("alpha", "beta", "h", "sa", "sw", "d")
    values = {k: Fraction(str(getattr(config, k))) for k in names}
    found = moments(act)
    closed = {"moments": found, "kernels": kernel_report(act, found),
              "affine": affine_coefficients(found, Fraction(1, config.d), Fraction(1))}
    subs = ",".join(f"{k}={getattr(config, k)}" for k in names)
    command = shlex.join(["meanfield", "derive", config.activation, "--data", config.data,
                          "--steps", "--subs", subs, "--latex"])
    rows = document.provenance(command, io.package_version(), io.git_revision())
    rows += (("written by", shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])),)
    doc = document.document(act, config.data, document.SECTIONS, provenance_rows=rows,
                            steps=True, values=values, point=values, closed_forms=closed,
                            where=f"d = {config.d}, t2 = 1/d, lr2/lr1 = 1")
    write_text(path, latex_document(doc))


def _reusable(out: Path, config: Config, overwrite: bool) -> dict[str, bool]:
    """Which stage outputs in ``out`` already hold this reproduction (checked before any work:
    a file of another configuration stops the run at once unless ``overwrite``)."""
    from meanfield.config import run_hash
    from meanfield.files.outputs import check_figure, comparison_identity, existing_result

    same = {
        "theory": existing_result(out / "theory.h5", "theory", run_hash(config), overwrite,
                                  config),
        "simulate": existing_result(out / "simulation.h5", "simulation", run_hash(config),
                                    overwrite, config),
        "compare": existing_result(out / "compare.h5", "comparison",
                                   comparison_identity(config, config, True), overwrite),
    }
    for figure in FIGURE_FILES:
        check_figure(out / figure, comparison_identity(config, config, True), overwrite)
    return same


def reproduce(
    name: str,
    out: str | Path,
    quick: bool = False,
    config: Config | None = None,
    on_stage: Callable[[str, float, Path | None], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> Reproduction:
    """Run the whole reproduction of figure ``name`` into folder ``out`` (created if needed).

    ``config`` replaces the figure's configuration; ``on_stage(stage, seconds, path)`` is
    called after each of ``derive``, ``theory``, ``simulate``, ``compare``, ``figure``;
    ``on_step(n)`` is passed to the simulator (e.g. a progress bar). Stages whose file already
    holds this configuration's result are reused (``Reproduction.reused``); a file of another
    configuration is refused before any work unless ``overwrite``.

    Returns:
        A :class:`Reproduction`: the files, the seconds of each stage, the comparison.

    Example:
        >>> rep = reproduce("pb-fig1", "fig1-quick", quick=True)   # doctest: +SKIP
        >>> rep.verdict                                          # doctest: +SKIP
        'agree'
    """
    from meanfield import plots, theory
    from meanfield.compare import compare
    from meanfield.files.comparison import write_comparison
    from meanfield.files.simulation import read_simulation, write_simulation
    from meanfield.files.theory import read_theory, write_theory
    from meanfield.schedule import schedule
    from meanfield.simulate import simulate

    config = config if config is not None else figure_config(name, quick)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rep = Reproduction(name=name, out=out, config=config)
    same = _reusable(out, config, overwrite)
    rep.reused = [label for label, ok in same.items() if ok]

    def stage(label: str, path: Path | None, run: Callable[[], None]) -> None:
        start = time.perf_counter()
        run()
        rep.seconds[label] = time.perf_counter() - start
        if path is not None:
            rep.files[label] = path
        if on_stage is not None:
            on_stage(label, rep.seconds[label], path)

    def run_theory() -> None:
        if not same["theory"]:
            steps, record = schedule(config)
            write_theory(theory.compute(config, times=steps[record]), out / "theory.h5")

    def run_simulation() -> None:
        if not same["simulate"]:
            write_simulation(simulate(config, on_step=on_step), out / "simulation.h5")

    def run_compare() -> None:  # cheap and deterministic: computed again when reused
        rep.comparison = compare(read_simulation(out / "simulation.h5"),
                                 read_theory(out / "theory.h5"))
        if not same["compare"]:
            write_comparison(rep.comparison, out / "compare.h5")

    stage("derive", out / "derivation.tex", lambda: _derive(config, out / "derivation.tex"))
    stage("theory", out / "theory.h5", run_theory)
    stage("simulate", out / "simulation.h5", run_simulation)
    stage("compare", out / "compare.h5", run_compare)

    def run_figures() -> None:
        plots.fig1(out / "compare.h5", out / FIGURE_FILES[0])
        plots.error_figure(out / "compare.h5", out / FIGURE_FILES[1])

    stage("figure", out / FIGURE_FILES[0], run_figures)
    rep.files["errors figure"] = out / FIGURE_FILES[1]
    return rep


@dataclass
class TargetReproduction:
    """A target's runs (file name -> what runs there: a linear configuration or a crossover
    run), files, seconds and criteria."""

    name: str
    out: Path
    quick: bool
    runs: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    criteria: list[Criterion] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # run files that held this run already

    @property
    def verdict(self) -> str:
        from meanfield.linear_targets import verdict

        return verdict(self.criteria)

    def to_dict(self) -> dict[str, object]:
        """The ``--json`` document: figure, verdict, criteria, files."""
        return {"figure": self.name, "verdict": self.verdict,
                "criteria": [c.to_dict() for c in self.criteria],
                "files": [str(p) for p in self.files.values()]}


@dataclass(frozen=True)
class _Runs:
    """How a target's runs are done and stored: the file ``kind``, a run's ``identity`` and
    memory ``estimate``, ``run`` it, ``write`` / ``read`` its result, and the ``label`` of its
    stage when a target has several runs."""

    kind: str
    identity: Callable[[Any], str]
    estimate: Callable[[Any], Any]
    run: Callable[[Any], Any]
    write: Callable[[Any, Path], None]
    read: Callable[[Path], Any]
    label: Callable[[Any], str]


def _reproduce_target(
    name: str, out: Path, quick: bool, targets: dict[str, Any], runs: _Runs,
    figure_file: str, figure_identity: str, draw: Callable[[dict[str, Any]], Any],
    evaluate: Callable[[dict[str, Any]], list[Criterion]],
    on_stage: Callable[[str, float, Path | None], None] | None, overwrite: bool,
    max_memory: int | None,
) -> TargetReproduction:
    """The steps every linear or crossover target takes (``targets``: file name -> run).

    Before any work: each file that already holds its run is marked for reuse, anything else
    in the way (another run, a figure of other runs) is refused unless ``overwrite``, and each
    run still to do must fit ``max_memory``. Then each run is done (or read back) and written,
    the figure drawn, the criteria evaluated; ``on_stage`` after each run and the figure."""
    from meanfield.files.outputs import existing_result, existing_tagged
    from meanfield.memory import check_estimate
    from meanfield.plots import save_figure

    figure = out / figure_file
    same = {file: existing_result(out / file, runs.kind, runs.identity(t), overwrite)
            for file, t in targets.items()}
    existing_tagged(figure, figure_identity, overwrite)
    for file, t in targets.items():
        if not same[file]:
            check_estimate(runs.estimate(t), max_memory)
    out.mkdir(parents=True, exist_ok=True)
    rep = TargetReproduction(name=name, out=out, quick=quick, runs=targets)
    rep.reused = [file for file, ok in same.items() if ok]

    def done(label: str, start: float, path: Path) -> None:
        rep.seconds[label] = time.perf_counter() - start
        rep.files[label] = path
        if on_stage is not None:
            on_stage(label, rep.seconds[label], path)

    results = {}
    for file, t in targets.items():
        start = time.perf_counter()
        if same[file]:
            results[file] = runs.read(out / file)
        else:
            results[file] = runs.run(t)
            runs.write(results[file], out / file)
        done(runs.label(t) if len(targets) > 1 else "run", start, out / file)
    start = time.perf_counter()
    save_figure(draw(results), figure, figure_identity)
    done("figure", start, figure)
    rep.criteria = evaluate(results)
    return rep


def reproduce_linear(
    name: str,
    out: str | Path,
    quick: bool = False,
    on_stage: Callable[[str, float, Path | None], None] | None = None,
    overwrite: bool = False,
    max_memory: int | None = None,
) -> TargetReproduction:
    """Run the linear target ``name`` (``lee-width``, ``lee-gp``, ``hu-early``) into folder
    ``out`` (created if needed): each run of
    :func:`meanfield.linear_targets.linear_configs` to its HDF5 file, the target's figure, the
    criteria.

    Before any work: a run file that already holds its configuration is reused (read back, not
    run again: ``TargetReproduction.reused``); a file holding anything else, or a figure of
    other runs, is refused (:class:`ConfigError`) unless ``overwrite``; each run still to do
    must fit ``max_memory`` bytes (``None``: the memory available now).
    ``on_stage(stage, seconds, path)`` is called after each run (``run``, or ``run d=25`` ...)
    and after the figure.

    Example:
        >>> rep = reproduce_linear("lee-gp", "lee-gp-quick", quick=True)   # doctest: +SKIP
        >>> rep.verdict                                                   # doctest: +SKIP
        'agree'
    """
    from meanfield.files.linear import read_linear, write_linear
    from meanfield.linear_run import run_linear
    from meanfield.linear_targets import (
        draw_target,
        evaluate,
        figure_name,
        identity,
        linear_configs,
    )
    from meanfield.memory import linear_estimate

    configs = linear_configs(name, quick)
    runs = _Runs(kind="linear", identity=lambda c: c.hash(), estimate=linear_estimate,
                 run=run_linear, write=write_linear, read=read_linear,
                 label=lambda c: f"run d={c.d}")
    return _reproduce_target(
        name, Path(out), quick, configs, runs, figure_name(name), identity(configs),
        draw=lambda results: draw_target(name, results),
        evaluate=lambda results: evaluate(name, results, quick),
        on_stage=on_stage, overwrite=overwrite, max_memory=max_memory)


def reproduce_crossover(
    name: str,
    out: str | Path,
    quick: bool = False,
    on_stage: Callable[[str, float, Path | None], None] | None = None,
    overwrite: bool = False,
    max_memory: int | None = None,
) -> TargetReproduction:
    """Run the crossover target ``name`` (``pb-crossover``, ``frankle-rewind``) into folder
    ``out`` (created if needed): each run of
    :func:`meanfield.crossover_targets.crossover_runs` to its HDF5 file (kind ``crossover``),
    the target's figure (``crossover.png``, ``frankle_rewind.png``), the criteria.

    Before any work: a run file that already holds its run is reused (read back, not run
    again: ``TargetReproduction.reused``); a file holding anything else, or a figure of
    other runs, is refused (:class:`ConfigError`) unless ``overwrite``; so is a run whose
    estimated peak memory exceeds ``max_memory`` bytes (default: the available memory).
    ``on_stage(stage, seconds, path)`` is called after each run (``run``, or
    ``run tau_k=0.2`` ...) and after the figure.

    Example:
        >>> rep = reproduce_crossover("pb-crossover", "pbx-quick", quick=True)  # doctest: +SKIP
        >>> rep.verdict                                                      # doctest: +SKIP
        'agree'
    """
    from meanfield.crossover_targets import (
        crossover_runs,
        draw_target,
        evaluate,
        figure_name,
        identity,
    )
    from meanfield.files.crossover import read_crossover, write_crossover
    from meanfield.memory import crossover_estimate

    targets = crossover_runs(name, quick)
    runs = _Runs(kind="crossover", identity=lambda r: r.identity(),
                 estimate=lambda r: crossover_estimate(r.config, len(r.alphas), r.settings),
                 run=lambda r: r.run(), write=write_crossover, read=read_crossover,
                 label=lambda r: f"run tau_k={r.settings.rewind_at:g}")
    return _reproduce_target(
        name, Path(out), quick, targets, runs, figure_name(name), identity(targets),
        draw=lambda results: draw_target(name, results),
        evaluate=lambda results: evaluate(name, results),
        on_stage=on_stage, overwrite=overwrite, max_memory=max_memory)
